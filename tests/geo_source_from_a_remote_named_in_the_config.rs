//! A station sources a stream from another broker named in the TOML
//! configuration (`[remotes.<name>]` with its URL and credentials), so the
//! station's metadata holds only the name: real `junction` processes, the
//! origin with a password, async-nats as the client. A bad `[remotes]` entry
//! stops the broker at start with one clear line; an unknown name is shown as
//! the source's error in `STREAM.INFO`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, stream::Source};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;
use crate::support::sourcing;

use sourcing::{GUARD, all_messages, config, until_count};

/// `junction serve -c FILE` with NATS alone on `port`.
async fn serve(dir: &Path, name: &str, toml: &str, port: u16, user: Option<(&str, &str)>) -> Child {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = process::serve_nats_only(&dir.join(name), port)
        .arg("-c")
        .arg(&file)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("junction starts");
    let url = format!("nats://127.0.0.1:{port}");
    tokio::time::timeout(GUARD, async {
        loop {
            let mut o = async_nats::ConnectOptions::new();
            if let Some((u, p)) = user {
                o = o.user_and_password(u.into(), p.into());
            }
            if let Ok(c) = o.connect(&url).await
                && jetstream::new(c).query_account().await.is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("junction answers");
    child
}

fn sourced(name: &str, remote: &str) -> jetstream::stream::Config {
    let mut c = config(name, &[]);
    c.sources = Some(vec![Source {
        name: "ORDERS".into(),
        ..Default::default()
    }]);
    c.metadata = HashMap::from([("junction.remote.ORDERS".to_string(), remote.to_string())]);
    c
}

/// `STREAM.INFO` as JSON (async-nats' `SourceInfo` has no `error`).
async fn raw_info(js: &jetstream::Context, name: &str) -> serde_json::Value {
    js.request(format!("STREAM.INFO.{name}"), &serde_json::json!({}))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_sources_from_a_remote_configured_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (process::free_port(), process::free_port());
    let mut a = serve(
        dir.path(),
        "a",
        "[auth]\nuser = \"link\"\npassword = \"s3cret\"\n",
        pa,
        Some(("link", "s3cret")),
    )
    .await;
    let b_toml = format!(
        "[remotes.east]\nurl = \"nats://127.0.0.1:{pa}\"\nuser = \"link\"\npassword = \"s3cret\"\n"
    );
    let mut b = serve(dir.path(), "b", &b_toml, pb, None).await;

    let a_js = jetstream::new(
        async_nats::ConnectOptions::new()
            .user_and_password("link".into(), "s3cret".into())
            .connect(format!("nats://127.0.0.1:{pa}"))
            .await
            .unwrap(),
    );
    a_js.create_stream(config("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    for i in 0..200 {
        a_js.publish(format!("orders.{}", i % 3), i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let b_js = jetstream::new(
        async_nats::connect(format!("nats://127.0.0.1:{pb}"))
            .await
            .unwrap(),
    );
    b_js.create_stream(sourced("GEO", "east")).await.unwrap();
    until_count(&b_js, "GEO", 200).await;
    let copies = all_messages(&b_js, "GEO").await;
    assert_eq!(copies.len(), 200);
    for (k, (_, subject, payload, src)) in copies.iter().enumerate() {
        assert_eq!(subject, &format!("orders.{}", k % 3));
        assert_eq!(payload, &k.to_string());
        // Stamped with the remote's name: the URL may change in the file.
        assert_eq!(
            src.as_deref(),
            Some(format!("ORDERS@east {}", k + 1).as_str())
        );
    }
    // The station's definition holds the name only: no credentials.
    let mut s = b_js.get_stream("GEO").await.unwrap();
    let info = s.info().await.unwrap().clone();
    let shown = serde_json::to_string(&info.config).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    tokio::time::timeout(GUARD, async {
        while b_js
            .get_stream("GEO")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .sources[0]
            .lag
            != 0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the source reports no lag");
    let raw = raw_info(&b_js, "GEO").await;
    assert!(raw["sources"][0]["error"].is_null(), "{raw}");

    // A name no [remotes] entry has: the source's error says so.
    b_js.create_stream(sourced("NOWHERE", "west"))
        .await
        .unwrap();
    let r = tokio::time::timeout(GUARD, async {
        loop {
            let raw = raw_info(&b_js, "NOWHERE").await;
            if let Some(e) = raw["sources"][0]["error"]["description"].as_str() {
                return e.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the source reports its error");
    assert!(
        r.contains("'west' is neither a NATS URL nor a remote configured under [remotes]"),
        "{r}"
    );
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_points_a_remote_at_its_new_url() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, nowhere) = (
        process::free_port(),
        process::free_port(),
        process::free_port(),
    );
    let mut a = serve(dir.path(), "a", "", pa, None).await;
    // At first the remote's URL is a port nobody listens on.
    let toml = |port: u16| format!("[remotes.east]\nurl = \"nats://127.0.0.1:{port}\"\n");
    let mut b = serve(dir.path(), "b", &toml(nowhere), pb, None).await;
    let a_js = jetstream::new(
        async_nats::connect(format!("nats://127.0.0.1:{pa}"))
            .await
            .unwrap(),
    );
    a_js.create_stream(config("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    for i in 0..50 {
        a_js.publish("orders.x", i.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let b_js = jetstream::new(
        async_nats::connect(format!("nats://127.0.0.1:{pb}"))
            .await
            .unwrap(),
    );
    b_js.create_stream(sourced("GEO", "east")).await.unwrap();
    tokio::time::timeout(GUARD, async {
        while raw_info(&b_js, "GEO").await["sources"][0]["error"].is_null() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the unreachable remote shows as the source's error");
    assert_eq!(
        b_js.get_stream("GEO")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        0
    );
    // The file now names the origin; SIGHUP reloads it, and the link's next
    // connection goes there.
    std::fs::write(dir.path().join("b.toml"), toml(pa)).unwrap();
    let pid = b.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    until_count(&b_js, "GEO", 50).await;
    let copies = all_messages(&b_js, "GEO").await;
    assert_eq!(copies.len(), 50);
    assert_eq!(copies[49].3.as_deref(), Some("ORDERS@east 50"));
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_remote_in_the_configuration_stops_the_broker_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[remotes.east]\nuser = \"u\"\npassword = \"p\"\n",
            "junction: remotes.east.url is missing",
        ),
        (
            "[remotes.east]\nurl = \"nats://h:4222\"\nuser = \"u\"\n",
            "junction: remotes.east: user and password go together",
        ),
        (
            "[remotes.east]\nurl = \"nats://h:4222\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\n",
            "junction: remotes.east: give one of user and password, token, or creds_file",
        ),
        (
            "[remotes.east]\nurl = \"nats://h:4222\"\ncreds_file = \"/nonexistent/x.creds\"\n",
            "junction: remotes.east.creds_file '/nonexistent/x.creds': No such file or directory",
        ),
        (
            "[remotes.\"a b\"]\nurl = \"nats://h:4222\"\n",
            "junction: remotes.a b: a remote's name is 1 to 64 letters, digits, '-' or '_'",
        ),
        (
            "[remotes.east]\nurl = \"nats://h:4222\"\ntenant = \"acme\"\n",
            "junction: remotes.east.tenant: there is no tenant 'acme' in [[tenants]]",
        ),
        (
            "[remotes.east]\nurl = \"nats://h:4222\"\npasword = \"p\"\n",
            "unknown key 'remotes.east.pasword'",
        ),
    ];
    for (k, (toml, line)) in cases.into_iter().enumerate() {
        let file = format!("bad{k}.toml");
        std::fs::write(dir.path().join(&file), toml).unwrap();
        let out = process::run_to_exit(
            dir.path(),
            &[
                "-c",
                &file,
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "--data-dir",
                "data",
            ],
            &[],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} was accepted");
        assert!(stderr.contains(line), "{toml}: {stderr}");
    }
}
