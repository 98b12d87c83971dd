//! A mirror's or source's origin on another broker (Junction or nats-server
//! 2.9+), read through an ordinary NATS client connection: an ordered pull
//! consumer on the origin stream from the first sequence not yet copied. The
//! connection is the only thing that crosses the network, so the link goes
//! wherever a NATS client can (as leaf nodes do). After any error, either
//! side's restart included, the consumer is made again from the progress read
//! back from the station's own log.

use super::sourcing::{Copied, Link};
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use junction_api::Subject;
use std::time::{Duration, Instant};

/// The link's error while the connection to the origin is down.
const DISCONNECTED: &str = "disconnected from the origin broker; reconnecting";
/// Most messages copied in one store write.
const BATCH: usize = 512;
/// Wait before reconnecting after an error (doubles up to [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) async fn run(link: Link) {
    let mut backoff = FIRST_BACKOFF;
    while !link.stopped() {
        match run_once(&link).await {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                link.set_error(e);
                link.pause(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect(link: &Link) -> Result<async_nats::Client, String> {
    let Some(given) = link.source.remote.as_ref() else {
        return Err("no remote".into());
    };
    let remote = &resolve(link, given)?;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("junction-source:{}", link.station))
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let (Some(u), Some(p)) = (&remote.user, &remote.password) {
        options = options.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &remote.token {
        options = options.token(t.clone());
    }
    if let Some(path) = &remote.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials file '{path}': {e}"))?;
    }
    let urls: Vec<String> = remote
        .url
        .split(',')
        .map(|u| u.trim().to_string())
        .collect();
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("remote URL: {e}"))?;
    tokio::time::timeout(Duration::from_secs(10), options.connect(addrs))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))
}

/// The remote as given in the station's metadata, or, when that names a
/// `[remotes.<name>]` entry, the configured one (the station's `external.api`
/// wins over the configured API prefix).
fn resolve(
    link: &Link,
    given: &junction_api::RemoteOrigin,
) -> Result<junction_api::RemoteOrigin, String> {
    let engine = link.engine.upgrade().ok_or("engine stopped")?;
    match engine.configured_remote(&link.tenant, &given.url)? {
        Some(mut r) => {
            if given.api.is_some() {
                r.api.clone_from(&given.api);
            }
            Ok(r)
        }
        None if !given.url.contains("://") && !given.url.contains(':') => Err(format!(
            "'{}' is neither a NATS URL nor a remote configured under [remotes]",
            given.url
        )),
        None => Ok(given.clone()),
    }
}

async fn run_once(link: &Link) -> Result<(), String> {
    let target = link.target().map_err(|e| e.to_string())?;
    let client = connect(link).await?;
    let watch = client.clone();
    let api = match link.source.remote.as_ref() {
        Some(given) => resolve(link, given)?.api,
        None => None,
    };
    let js = match api {
        Some(prefix) => jetstream::with_prefix(client, &prefix),
        None => jetstream::new(client),
    };
    let target2 = target.clone();
    let mut next = tokio::task::spawn_blocking({
        let start_time = link.source.start_time_ns;
        let start_seq = link.source.start_seq;
        let from = link.resume_from(&target2);
        move || (from, start_time, start_seq)
    })
    .await
    .map_err(|e| e.to_string())?
    .0;
    let stream = js
        .get_stream(&link.source.name)
        .await
        .map_err(|e| format!("stream '{}': {e}", link.source.name))?;
    let deliver_policy = if link.source.start_time_ns > 0 && next <= link.source.start_seq.max(1) {
        let t =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(link.source.start_time_ns))
                .map_err(|e| e.to_string())?;
        DeliverPolicy::ByStartTime { start_time: t }
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: next,
        }
    };
    let mut filter_subjects: Vec<String> = link
        .source
        .filter_subject
        .iter()
        .cloned()
        .chain(link.source.transforms.iter().map(|t| t.source.clone()))
        .filter(|f| f != ">")
        .collect();
    let filter_subject = if filter_subjects.len() == 1 {
        filter_subjects.pop().unwrap_or_default()
    } else {
        String::new()
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy,
            filter_subject,
            filter_subjects,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("consumer on '{}': {e}", link.source.name))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consume '{}': {e}", link.source.name))?;
    link.set_status(|s| {
        s.error = None;
        s.last_contact = Some(Instant::now());
    });
    let mut chunks = Box::pin(messages.ready_chunks(BATCH));
    // The client reconnects (and the ordered consumer recreates itself) by
    // itself, quietly: the connection's state is checked every second, so an
    // unreachable origin shows as the link's error and its last contact stops
    // moving, and a connected but idle one stays "seen".
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let chunk = tokio::select! {
            () = link.stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if watch.connection_state() == async_nats::connection::State::Connected {
                    link.set_status(|s| {
                        s.last_contact = Some(Instant::now());
                        if s.error.as_deref() == Some(DISCONNECTED) {
                            s.error = None;
                        }
                    });
                } else {
                    link.set_status(|s| s.error = Some(DISCONNECTED.to_string()));
                }
                continue;
            }
            c = chunks.next() => c,
        };
        let Some(chunk) = chunk else {
            return Err("origin consumer ended".into());
        };
        let mut batch = Vec::with_capacity(chunk.len());
        let mut lag = 0;
        let mut last = 0;
        for m in chunk {
            let m = m.map_err(|e| format!("origin: {e}"))?;
            let info = m.info().map_err(|e| format!("origin reply: {e}"))?;
            let seq = info.stream_sequence;
            lag = info.pending;
            last = seq;
            let subject = Subject::new(m.subject.to_string()).map_err(|e| e.to_string())?;
            let headers = m.headers.as_ref().map(|h| {
                let mut out = junction_api::Headers::new();
                for (k, vs) in h.iter() {
                    for v in vs {
                        out.append(k.to_string(), v.as_str().to_string());
                    }
                }
                out
            });
            batch.push(Copied {
                seq,
                subject,
                headers,
                payload: m.payload.clone(),
            });
        }
        next = link
            .store(&target, batch, next)
            .await
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        link.set_status(|s| {
            s.last_seq = last;
            s.lag = lag;
            s.active_ms = 0;
            s.last_contact = Some(now);
            s.error = None;
        });
    }
}
