//! `junction cluster join ROUTE…` (`POST /v1/cluster/join`): a running node
//! that is a cluster of one with nothing defined joins another cluster.
//!
//! A node started with `--cluster-listen` and no `--join` forms a meta group of
//! its own. Two meta groups never merge, so joining means this node gives its
//! own up, as EMQX's `cluster join` resets the joining node: the request is
//! refused when the node has peers or anything defined (stations, schemas,
//! routing rules, the MQTT front-end's session stores), since those would be
//! lost. Otherwise the node writes the routes down (fsynced), answers, and
//! restarts in place (the same process id, arguments and data directory). At
//! that start it forgets its meta group once and dials the routes; it then
//! joins as a new node, with a new id, and gets every definition of the
//! cluster. The routes are kept, so later restarts dial them too.

use super::StationEngine;
use junction_api::EngineError;
use serde::{Deserialize, Serialize};

/// Key (store metadata) of a pending or done join.
const JOIN_KEY: &str = "cluster.join";

/// What `cluster join` wrote down.
#[derive(Debug, Serialize, Deserialize)]
struct JoinNote {
    /// Cluster addresses to dial (`host:port`).
    routes: Vec<String>,
    /// The node's own meta group was forgotten (done once, at the first start
    /// after the join).
    #[serde(default)]
    forgotten: bool,
}

/// A hook that restarts the process in place (the server installs it).
pub type RestartHook = Box<dyn Fn() + Send + Sync>;

impl StationEngine {
    /// Installs what restarts the process in place (`junction serve`).
    pub fn set_restart_hook(&self, hook: RestartHook) {
        let _ = self.restart_hook.set(hook);
    }

    /// Checks that this node may join another cluster, writes the routes down,
    /// and restarts it in place shortly after (so that the answer goes out).
    pub(crate) fn join_cluster_now(&self, routes: Vec<String>) -> Result<(), EngineError> {
        let (Some(meta), Some(cluster)) = (self.meta(), self.cluster()) else {
            return Err(EngineError::BadRequest(
                "this broker does not run as a cluster node: start it with --cluster-listen".into(),
            ));
        };
        let routes: Vec<String> = routes
            .iter()
            .map(|r| crate::config::ClusterSettings::strip_scheme(r))
            .filter(|r| !r.is_empty())
            .collect();
        if routes.is_empty() {
            return Err(EngineError::BadRequest(
                "give at least one cluster address of a node of the cluster to join (host:port)"
                    .into(),
            ));
        }
        for r in &routes {
            if r.parse::<std::net::SocketAddr>().is_err() && !r.contains(':') {
                return Err(EngineError::BadRequest(format!(
                    "'{r}' is not a cluster address (host:port)"
                )));
            }
        }
        if self.restart_hook.get().is_none() {
            return Err(EngineError::BadRequest(
                "this node cannot restart itself to join".into(),
            ));
        }
        let me = cluster.node().to_string();
        let status = meta.status();
        let others: Vec<String> = status
            .nodes
            .iter()
            .map(|(_, name, _)| name.clone())
            .filter(|n| *n != me && !status.removed.contains(n))
            .collect();
        if !others.is_empty() {
            return Err(EngineError::ClusterStateExists(format!(
                "it is in a cluster already (with {}); `junction cluster leave` it first and start it on an empty data directory",
                others.join(", ")
            )));
        }
        let defined = meta.state().map(|s| s.defs.len()).unwrap_or(0);
        if defined > 0 {
            return Err(EngineError::ClusterStateExists(format!(
                "its cluster of one has {defined} definition(s) (stations, schemas, routing rules, MQTT session stores) that joining would drop; delete them, or start the node on an empty data directory with --join"
            )));
        }
        let note = JoinNote {
            routes: routes.clone(),
            forgotten: false,
        };
        let json = serde_json::to_vec(&note).map_err(|e| EngineError::Storage(e.to_string()))?;
        self.store()
            .put_meta(JOIN_KEY, &json)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        tracing::warn!(
            ?routes,
            "joining another cluster: this node restarts in place and forgets its cluster of one"
        );
        if let Some(me) = self.me.upgrade()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                if let Some(hook) = me.restart_hook.get() {
                    hook();
                }
            });
        }
        Ok(())
    }
}

/// At start, before the meta group starts: the routes a `cluster join` wrote
/// down (dialled on every start), forgetting this node's own meta group the
/// first time.
pub async fn join_routes(store: &junction_storage::Store) -> Result<Vec<String>, String> {
    let Some(bytes) = store.get_meta(JOIN_KEY).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let mut note: JoinNote = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !note.forgotten {
        junction_cluster::meta::forget_meta(store).await?;
        note.forgotten = true;
        let json = serde_json::to_vec(&note).map_err(|e| e.to_string())?;
        store.put_meta(JOIN_KEY, &json).map_err(|e| e.to_string())?;
        tracing::warn!(routes = ?note.routes, "this node's own cluster of one was forgotten: it joins the cluster at these routes as a new node");
    }
    Ok(note.routes)
}
