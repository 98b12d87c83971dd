//! A stream's own `subject_transform {src, dest}` (nats-server 2.10): a
//! message published to the stream's subjects whose subject matches `src` is
//! stored under `dest` (`$n`, `{{wildcard(n)}}`, a trailing `>`,
//! `{{partition(n,…)}}`), others as they are; the config echoes it; a bad
//! transform is 500 / 10049 `stream subject transform from '…' to '…': …`, as
//! nats-server 2.10.26 answers (side by side in
//! subject_transforms_answer_as_nats_server_2_10.rs).

use crate::support::{api, connect, expect_api_error, within};
use bytes::Bytes;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stores_publishes_under_its_transformed_subject() {
    let b = broker().await;
    let (client, _js) = connect(&b).await;
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.ST",
        r#"{"name":"ST","subjects":["st.in.>"],
            "subject_transform":{"src":"st.in.*.*","dest":"st.out.{{wildcard(2)}}.$1"}}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["config"]["subject_transform"]["src"], "st.in.*.*", "{v}");
    assert_eq!(
        v["config"]["subject_transform"]["dest"], "st.out.{{wildcard(2)}}.$1",
        "{v}"
    );

    for subject in ["st.in.eu.new", "st.in.x.y.z"] {
        let ack = within("publish", client.request(subject, Bytes::from_static(b"m")))
            .await
            .unwrap();
        let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
        assert_eq!(ack["stream"], "ST", "{ack}");
    }
    // Stored under the destination; a subject `src` does not match, as it is.
    let get = |seq: u64| {
        let client = client.clone();
        async move {
            api(
                &client,
                "$JS.API.STREAM.MSG.GET.ST",
                &format!(r#"{{"seq":{seq}}}"#),
            )
            .await
        }
    };
    let m = get(1).await;
    assert_eq!(m["message"]["subject"], "st.out.new.eu", "{m}");
    let m = get(2).await;
    assert_eq!(m["message"]["subject"], "st.in.x.y.z", "{m}");
    // Last-by-subject finds it under the stored subject.
    let m = api(
        &client,
        "$JS.API.STREAM.MSG.GET.ST",
        r#"{"last_by_subj":"st.out.new.eu"}"#,
    )
    .await;
    assert_eq!(m["message"]["seq"], 1, "{m}");

    // An update can change it; it applies to what is published from then on.
    let v = api(
        &client,
        "$JS.API.STREAM.UPDATE.ST",
        r#"{"name":"ST","subjects":["st.in.>"],
            "subject_transform":{"src":"st.in.>","dest":"st.all.>"}}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let ack = within(
        "publish",
        client.request("st.in.eu.new", Bytes::from_static(b"m")),
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&ack.payload).contains("\"seq\":3"));
    let m = get(3).await;
    assert_eq!(m["message"]["subject"], "st.all.eu.new", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_stream_transform_is_refused_with_nats_server_codes() {
    let b = broker().await;
    let (client, _js) = connect(&b).await;
    // nats-server 2.10.26's answers (compared live in
    // subject_transforms_answer_as_nats_server_2_10.rs): 500 / 10049 on create.
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.BAD",
        r#"{"name":"BAD","subjects":["b.>"],"subject_transform":{"src":"b..x","dest":"c"}}"#,
    )
    .await;
    let text = expect_api_error(&v, 500, 10049);
    assert_eq!(
        text,
        "stream subject transform from 'b..x' to 'c': invalid subject"
    );
    for dest in ["c.$2", "c.{{nope(1)}}", "c.>"] {
        let v = api(
            &client,
            "$JS.API.STREAM.CREATE.BAD",
            &format!(
                r#"{{"name":"BAD","subjects":["b.>"],"subject_transform":{{"src":"b.*","dest":"{dest}"}}}}"#
            ),
        )
        .await;
        let text = expect_api_error(&v, 500, 10049);
        assert!(
            text.starts_with(&format!(
                "stream subject transform from 'b.*' to '{dest}': "
            )),
            "{dest}: {text}"
        );
    }
}
