//! Subject transforms side by side with nats-server 2.10.26: the same stream
//! `subject_transform`s, republish destinations, source and mirror transforms,
//! sent to both servers by the same client, get the same answers: the same
//! stored or republished subjects, and the same error objects (code, err_code
//! and description, byte for byte).
//!
//! nats-server 2.10 comes from `scripts/nats-server-2.10` (Debian packages only
//! 2.9, which has no stream transforms); `scripts/test` runs it and sets
//! `NATS_SERVER_2_10`. Two deliberate differences are checked on Junction alone:
//! `{{partition(0,1)}}` is refused (nats-server 2.10.26 accepts it and panics on
//! the first publish), and a transform whose result is not a valid subject keeps
//! the subject (nats-server stores the invalid one).

use crate::support::{api, within};
use bytes::Bytes;
use junction_conformance::{NatsServer, broker};
use serde_json::{Value, json};
use std::time::Duration;

/// nats-server 2.10, as `scripts/nats-server-2.10` installs it.
fn nats_server_2_10() -> Option<String> {
    let path = std::env::var("NATS_SERVER_2_10").unwrap_or_else(|_| {
        format!(
            "{}/../target/nats-server-2.10.26/nats-server",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").is_err(),
        "nats-server 2.10 is required under CI: scripts/test sets NATS_SERVER_2_10"
    );
    eprintln!("skipped: no nats-server 2.10 (run scripts/nats-server-2.10)");
    None
}

async fn start_peer(bin: &str) -> NatsServer {
    NatsServer::start_binary(bin, "jetstream { store_dir: \"{store}\" }").await
}

/// Stream transforms: (src, dest, subjects published).
const STREAM_CASES: &[(&str, &str, &[&str])] = &[
    (
        "st.in.*.*",
        "st.out.{{wildcard(2)}}.$1",
        &["st.in.eu.new", "st.in.x.y.z"],
    ),
    ("st.in.>", "st.all.>", &["st.in.a", "st.in.a.b.c"]),
    (
        "st.*",
        "p.{{partition(3,1)}}.{{wildcard(1)}}",
        &["st.a", "st.b", "st.c", "st.hello", "st.x1"],
    ),
    ("st.*.*", "p.{{Partition(5,1,2)}}", &["st.a.b", "st.ab.c"]),
    ("st.*.*", "b.$2.$1", &["st.a.b"]),
    ("st.*", "b.{{ wildcard( 1 ) }}", &["st.a"]),
    ("st.*", "b.pre{{wildcard(1)}}", &["st.a"]),
    ("st.*", "b.a$1", &["st.a"]),
    ("st.*", "b.$x", &["st.a"]),
    ("st.*", "b.{{splitfromleft(1,2)}}", &["st.abcdef", "st.a"]),
    ("st.*", "b.{{SplitFromRight(1,2)}}", &["st.abcdef", "st.ab"]),
    (
        "st.*",
        "b.{{slicefromleft(1,2)}}",
        &["st.abcde", "st.ab", "st.abcdef"],
    ),
    (
        "st.*",
        "b.{{slicefromright(1,2)}}",
        &["st.abcde", "st.ab", "st.abcdef"],
    ),
    (
        "st.*",
        "b.{{split(1,-)}}",
        &["st.a-b-c", "st.-a--b-", "st.abc"],
    ),
    ("", "all.>", &["st.a.b"]),
    (">", "all.>", &["st.a.b"]),
    ("st.*", "c", &["st.a"]),
    ("st.a", "c.d", &["st.a", "st.b"]),
    ("st.*.>", "x.$1.>", &["st.a.b.c"]),
    ("st.*", "", &["st.a"]),
    ("st.*", "c.{{wildcard(0)}}", &["st.a"]),
    // Refused.
    ("st.>", "x.>.y", &[]),
    ("st..x", "c", &[]),
    ("st.*", "c.$2", &[]),
    ("st.*", "c.{{nope(1)}}", &[]),
    ("st.*", "c.>", &[]),
    ("st.>", "c", &[]),
    ("st.*", "c.*", &[]),
    ("st.*", "c.{{wildcard()}}", &[]),
    ("st.*", "c.{{wildcard(1,2)}}", &[]),
    ("st.*", "c.{{wildcard(x)}}", &[]),
    ("st.*", "c.{{partition(3)}}", &[]),
    ("st.*", "c.{{partition(x,1)}}", &[]),
    ("st.*", "c.{{splitfromleft(1)}}", &[]),
    ("st.*", "c.{{splitfromleft(1,2,3)}}", &[]),
    ("st.*", "c.{{split(1,a b)}}", &[]),
    ("st.a", "c.$1", &[]),
    ("st.a", "c.{{wildcard(1)}}", &[]),
    ("st.*", "c..d", &[]),
];

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    api(client, subject, &body.to_string()).await
}

/// What one server answers to every stream case: the error, or the echoed
/// transform and the subject each publish was stored under.
async fn stream_answers(url: &str) -> Vec<Value> {
    let client = within("connect", async_nats::connect(url)).await.unwrap();
    let mut out = Vec::new();
    for (i, (src, dest, subjects)) in STREAM_CASES.iter().enumerate() {
        let name = format!("T{i}");
        let v = request(
            &client,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            json!({"name": name, "subjects": ["st.>"],
                   "subject_transform": {"src": src, "dest": dest}}),
        )
        .await;
        if let Some(e) = v.get("error") {
            out.push(json!({"case": [src, dest], "error": e}));
            continue;
        }
        let mut stored = Vec::new();
        for s in *subjects {
            let ack = within("publish", client.request(s.to_string(), Bytes::from("m")))
                .await
                .unwrap();
            let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
            let got = request(
                &client,
                &format!("$JS.API.STREAM.MSG.GET.{name}"),
                json!({"seq": ack["seq"]}),
            )
            .await;
            stored.push(got["message"]["subject"].clone());
        }
        out.push(json!({"case": [src, dest],
                        "config": v["config"]["subject_transform"], "stored": stored}));
        request(&client, &format!("$JS.API.STREAM.DELETE.{name}"), json!({})).await;
    }
    // An update refuses with its own code.
    request(
        &client,
        "$JS.API.STREAM.CREATE.U",
        json!({"name": "U", "subjects": ["u.>"]}),
    )
    .await;
    for (src, dest) in [("u.*", "c.$2"), ("u..", "c")] {
        let v = request(
            &client,
            "$JS.API.STREAM.UPDATE.U",
            json!({"name": "U", "subjects": ["u.>"],
                   "subject_transform": {"src": src, "dest": dest}}),
        )
        .await;
        out.push(json!({"update": [src, dest], "error": v["error"]}));
    }
    out
}

/// Republish destinations: the error, or the subject a copy was republished on.
async fn republish_answers(url: &str) -> Vec<Value> {
    let client = within("connect", async_nats::connect(url)).await.unwrap();
    let mut out = Vec::new();
    for dest in [
        "rp.*",
        "rp.$1",
        "rp.{{wildcard(1)}}",
        "rp.{{split(1,-)}}",
        "rp.{{nope(1)}}",
        "rp.>",
        "rp.$2",
    ] {
        let v = request(
            &client,
            "$JS.API.STREAM.CREATE.R",
            json!({"name": "R", "subjects": ["r.>"],
                   "republish": {"src": "r.*", "dest": dest}}),
        )
        .await;
        if let Some(e) = v.get("error") {
            out.push(json!({"republish": dest, "error": e}));
            continue;
        }
        let mut sub = client.subscribe("rp.>").await.unwrap();
        client.flush().await.unwrap();
        within("publish", client.request("r.a-b", Bytes::from("x")))
            .await
            .unwrap();
        let m = within("republished copy", futures::StreamExt::next(&mut sub))
            .await
            .unwrap();
        out.push(json!({"republish": dest, "subject": m.subject.as_str()}));
        request(&client, "$JS.API.STREAM.DELETE.R", json!({})).await;
    }
    out
}

/// Source and mirror transforms: the error, or the subjects copied.
async fn sourcing_answers(url: &str) -> Vec<Value> {
    let client = within("connect", async_nats::connect(url)).await.unwrap();
    let mut out = Vec::new();
    request(
        &client,
        "$JS.API.STREAM.CREATE.O",
        json!({"name": "O", "subjects": ["o.>"]}),
    )
    .await;
    for i in 0..3 {
        within(
            "publish",
            client.request(format!("o.k{i}-x"), Bytes::from("x")),
        )
        .await
        .unwrap();
    }
    for (src, dest) in [
        ("o.*", "s.{{split(1,-)}}"),
        ("o.*", "s.{{slicefromleft(1,2)}}"),
        ("o.*", "s.$2"),
        ("o.*", "s.{{nope(1)}}"),
        ("o.*", "s.*"),
        ("o..", "s"),
        ("o.>", "s.x"),
    ] {
        let v = request(
            &client,
            "$JS.API.STREAM.CREATE.S",
            json!({"name": "S", "sources": [{"name": "O",
                   "subject_transforms": [{"src": src, "dest": dest}]}]}),
        )
        .await;
        if let Some(e) = v.get("error") {
            out.push(json!({"source": [src, dest], "error": e}));
            continue;
        }
        let mut copied = Vec::new();
        for _ in 0..400 {
            copied.clear();
            for seq in 1..=3 {
                let got = request(&client, "$JS.API.STREAM.MSG.GET.S", json!({"seq": seq})).await;
                if let Some(s) = got["message"]["subject"].as_str() {
                    copied.push(s.to_string());
                }
            }
            if copied.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        copied.sort();
        out.push(json!({"source": [src, dest], "copied": copied}));
        request(&client, "$JS.API.STREAM.DELETE.S", json!({})).await;
    }
    for (src, dest) in [("o.*", "m.$2"), ("o.*", "m.{{nope(1)}}")] {
        let v = request(
            &client,
            "$JS.API.STREAM.CREATE.M",
            json!({"name": "M", "mirror": {"name": "O",
                   "subject_transforms": [{"src": src, "dest": dest}]}}),
        )
        .await;
        out.push(json!({"mirror": [src, dest], "error": v["error"]}));
        request(&client, "$JS.API.STREAM.DELETE.M", json!({})).await;
    }
    out
}

fn assert_same(what: &str, junction: &[Value], nats: &[Value]) {
    assert_eq!(junction.len(), nats.len(), "{what}: answer counts");
    let mut differ = Vec::new();
    for (j, n) in junction.iter().zip(nats) {
        if j != n {
            differ.push(format!("  junction:    {j}\n  nats-server: {n}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{what}: {} of {} answers differ from nats-server 2.10's:\n{}",
        differ.len(),
        nats.len(),
        differ.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_transforms_store_and_refuse_as_nats_server_2_10_does() {
    let Some(bin) = nats_server_2_10() else {
        return;
    };
    let peer = start_peer(&bin).await;
    let b = broker().await;
    let nats = stream_answers(&peer.url()).await;
    let junction = stream_answers(&b.nats_url()).await;
    // The table exercised both outcomes.
    assert!(nats.iter().filter(|v| v.get("stored").is_some()).count() >= 20);
    assert!(nats.iter().filter(|v| v.get("error").is_some()).count() >= 18);
    assert_same("stream subject_transform", &junction, &nats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_and_sourcing_transforms_answer_as_nats_server_2_10_does() {
    let Some(bin) = nats_server_2_10() else {
        return;
    };
    let peer = start_peer(&bin).await;
    let b = broker().await;
    let nats = republish_answers(&peer.url()).await;
    assert_same("republish", &republish_answers(&b.nats_url()).await, &nats);
    let nats = sourcing_answers(&peer.url()).await;
    assert!(
        nats.iter()
            .any(|v| v["copied"].as_array().is_some_and(|c| c.len() == 3))
    );
    assert_same(
        "sources and mirrors",
        &sourcing_answers(&b.nats_url()).await,
        &nats,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_nats_server_2_10_breaks_junction_refuses_or_keeps_the_subject() {
    let b = broker().await;
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    // nats-server 2.10.26 accepts this and panics (divide by zero) on a publish.
    let v = request(
        &client,
        "$JS.API.STREAM.CREATE.Z",
        json!({"name": "Z", "subjects": ["z.>"],
               "subject_transform": {"src": "z.*", "dest": "p.{{partition(0,1)}}"}}),
    )
    .await;
    assert_eq!(v["error"]["err_code"], 10049, "{v}");
    assert_eq!(
        v["error"]["description"],
        "stream subject transform from 'z.*' to 'p.{{partition(0,1)}}': invalid mapping \
         destination: function argument is invalid or in the wrong format in {{partition(0,1)}}"
    );
    // `--` split at `-` is empty: nats-server stores the invalid subject `b.`;
    // Junction stores the message under the subject it was published to.
    let v = request(
        &client,
        "$JS.API.STREAM.CREATE.SP",
        json!({"name": "SP", "subjects": ["sp.>"],
               "subject_transform": {"src": "sp.*", "dest": "b.{{split(1,-)}}"}}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let ack = within("publish", client.request("sp.--", Bytes::from("m")))
        .await
        .unwrap();
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["stream"], "SP", "{ack}");
    let got = request(
        &client,
        "$JS.API.STREAM.MSG.GET.SP",
        json!({"seq": ack["seq"]}),
    )
    .await;
    assert_eq!(got["message"]["subject"], "sp.--", "{got}");
}
