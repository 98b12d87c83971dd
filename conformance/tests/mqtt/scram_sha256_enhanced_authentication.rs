//! MQTT 5 enhanced authentication with SCRAM-SHA-256, EMQX's flow, over a raw
//! socket: CONNECT (Authentication Method `SCRAM-SHA-256`, Authentication Data =
//! client-first-message) → AUTH 0x18 (server-first-message) → AUTH 0x18
//! (client-final-message) → CONNACK 0x00 carrying the server-final-message. The
//! client side of SCRAM here is its own (RFC 5802 with `hmac`, `sha2` and
//! `pbkdf2`), not the broker's code.

use crate::support::{Raw, RawPacket, lstr, packet, publish_raw, subscribe_raw, varint};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use junction::engine::{PermissionsConfig, RulesConfig, StringList, User};
use junction_conformance::{TestBroker, mqtt_broker_with};
use sha2::{Digest, Sha256};

const SCRAM: &str = "SCRAM-SHA-256";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn list(items: &[&str]) -> Option<StringList> {
    Some(StringList::Many(
        items.iter().map(|s| s.to_string()).collect(),
    ))
}

/// The password of `hashed`, stored as a bcrypt hash.
const HASHED_PASSWORD: &str = "pw";

/// `pencil` may publish and subscribe under `orders/` only; `hashed` has a
/// bcrypt password.
async fn broker() -> TestBroker {
    let mut limited = User::new("user", "pencil");
    limited.permissions = Some(PermissionsConfig {
        publish: Some(RulesConfig::Split {
            allow: list(&["orders.>"]),
            deny: None,
        }),
        subscribe: Some(RulesConfig::Split {
            allow: list(&["orders.>"]),
            deny: None,
        }),
        allow_responses: None,
    });
    let hash = junction::engine::auth::hash_password(HASHED_PASSWORD, 4).unwrap();
    mqtt_broker_with(move |c| c.auth.users = vec![limited, User::new("hashed", hash)]).await
}

/// MQTT 5 properties: (id, value bytes; a string's or binary's without its length).
fn properties(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (mut len, mut used) = (0usize, 0usize);
    let mut mult = 1;
    for byte in b {
        used += 1;
        len += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut p = &b[used..used + len];
    let mut out = Vec::new();
    while let Some((&id, rest)) = p.split_first() {
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x26 => {
                let k = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let v = usize::from(u16::from_be_bytes([rest[2 + k], rest[3 + k]]));
                out.push((id, rest[..4 + k + v].to_vec()));
                p = &rest[4 + k + v..];
                continue;
            }
            _ => {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                out.push((id, rest[2..2 + n].to_vec()));
                p = &rest[2 + n..];
                continue;
            }
        };
        out.push((id, rest[..size].to_vec()));
        p = &rest[size..];
    }
    out
}

fn property(props: &[(u8, Vec<u8>)], id: u8) -> Option<String> {
    props
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// Authentication Method and Data properties.
fn auth_props(method: &str, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x15];
    p.extend(lstr(method.as_bytes()));
    p.push(0x16);
    p.extend(lstr(data));
    p
}

/// An MQTT 5 CONNECT with an Authentication Method and Data.
fn connect(client_id: &str, method: &str, data: &[u8]) -> Vec<u8> {
    crate::support::connect_v5(client_id, true, 60, &auth_props(method, data))
}

/// An AUTH packet.
fn auth(reason: u8, props: &[u8]) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    packet(0xF0, &body)
}

/// The client's side of one SCRAM-SHA-256 exchange.
struct Client {
    first_bare: String,
}

impl Client {
    fn first(user: &str) -> (Client, Vec<u8>) {
        let first_bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let msg = format!("n,,{first_bare}").into_bytes();
        (Client { first_bare }, msg)
    }

    /// The client-final-message for `password`, and the server signature the
    /// server-final-message must carry.
    fn last(&self, server_first: &str, password: &str) -> (Vec<u8>, String) {
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attr in server_first.split(',') {
            match attr.split_at(2) {
                ("r=", r) => nonce = r,
                ("s=", s) => salt = STANDARD.decode(s).unwrap(),
                ("i=", i) => iterations = i.parse().unwrap(),
                _ => {}
            }
        }
        assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL") && nonce.len() > 24);
        assert_eq!(iterations, 4096);
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
            format!("v={}", STANDARD.encode(server_signature)),
        )
    }
}

/// Reads the server's AUTH 0x18 and returns its server-first-message.
async fn challenge(raw: &mut Raw) -> String {
    let p = raw.read().await.expect("AUTH, not a close");
    assert_eq!(p.first, 0xF0, "AUTH expected: {p:?}");
    assert_eq!(p.body[0], 0x18, "continue authentication");
    let props = properties(&p.body[1..]);
    assert_eq!(property(&props, 0x15).as_deref(), Some(SCRAM));
    property(&props, 0x16).expect("server-first-message")
}

/// The CONNACK's reason code and properties.
async fn connack(raw: &mut Raw) -> (u8, Vec<(u8, Vec<u8>)>) {
    let p: RawPacket = raw.read().await.expect("CONNACK, not a close");
    assert_eq!(p.kind(), 2, "CONNACK expected: {p:?}");
    (p.body[1], properties(&p.body[2..]))
}

/// A SCRAM login as `user` with `password`, up to the CONNACK.
async fn login(
    b: &TestBroker,
    client_id: &str,
    user: &str,
    password: &str,
) -> (Raw, u8, Vec<(u8, Vec<u8>)>, String) {
    let mut raw = Raw::open(b).await;
    let (client, first) = Client::first(user);
    raw.send(&connect(client_id, SCRAM, &first)).await;
    let server_first = challenge(&mut raw).await;
    let (last, server_signature) = client.last(&server_first, password);
    raw.send(&auth(0x18, &auth_props(SCRAM, &last))).await;
    let (code, props) = connack(&mut raw).await;
    (raw, code, props, server_signature)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_login_connects_with_the_users_permissions() {
    let b = broker().await;
    let (mut raw, code, props, server_signature) = login(&b, "scram-ok", "user", "pencil").await;
    assert_eq!(code, 0, "CONNACK success: {props:?}");
    assert_eq!(property(&props, 0x15).as_deref(), Some(SCRAM));
    assert_eq!(
        property(&props, 0x16),
        Some(server_signature),
        "server-final-message proves the server holds the user's keys"
    );

    // The user's permissions: `orders/+` only (as a password login has them).
    raw.send(&subscribe_raw(1, "orders/+", 1, Some(&[]))).await;
    let ack = raw.read().await.expect("SUBACK");
    assert_eq!((ack.kind(), ack.body.last().copied()), (9, Some(0x01)));
    raw.send(&subscribe_raw(2, "other/#", 1, Some(&[]))).await;
    let ack = raw.read().await.expect("SUBACK");
    assert_eq!((ack.kind(), ack.body.last().copied()), (9, Some(0x87)));
    raw.send(&publish_raw(
        b"elsewhere",
        1,
        3,
        false,
        false,
        b"no",
        Some(&[]),
    ))
    .await;
    let ack = raw.read().await.expect("PUBACK");
    assert_eq!((ack.kind(), ack.ack_reason()), (4, 0x87), "publish denied");
    raw.send(&publish_raw(
        b"orders/1",
        1,
        4,
        false,
        false,
        b"yes",
        Some(&[]),
    ))
    .await;
    let mut acked = false;
    let mut got = None;
    while !acked || got.is_none() {
        let p = raw.read().await.expect("PUBACK and PUBLISH");
        match p.kind() {
            4 => {
                assert_eq!((p.pkid(), p.ack_reason()), (4, 0));
                acked = true;
            }
            3 => got = Some(p.publish_parts(true)),
            _ => panic!("unexpected {p:?}"),
        }
    }
    assert_eq!(got, Some(("orders/1".to_string(), b"yes".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_or_unknown_user_gets_0x86_and_close() {
    let b = broker().await;
    for (id, user) in [("scram-bad", "user"), ("scram-nobody", "nobody")] {
        let (mut raw, code, props, _) = login(&b, id, user, "wrong").await;
        assert_eq!(code, 0x86, "{user}: bad user name or password: {props:?}");
        assert!(property(&props, 0x16).is_none(), "no server-final-message");
        assert!(raw.read().await.is_none(), "closed");
    }
}

/// A bcrypt user cannot do SCRAM (the hash is not the password): even with its
/// right password it is answered as a failed login, exactly as an unknown user
/// or a wrong password is, so the answer does not tell which user names exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_user_is_refused_like_a_wrong_password() {
    let b = broker().await;
    let (mut raw, code, props, _) = login(&b, "scram-bcrypt", "hashed", HASHED_PASSWORD).await;
    assert_eq!(code, 0x86, "bad user name or password: {props:?}");
    assert!(property(&props, 0x16).is_none(), "no server-final-message");
    assert!(raw.read().await.is_none(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_gets_0x8c() {
    let b = broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect("scram-plain", "PLAIN", b"\0user\0pencil"))
        .await;
    let (code, _) = connack(&mut raw).await;
    assert_eq!(code, 0x8C);
    assert!(raw.read().await.is_none(), "closed");

    // A broker without users has nothing to authenticate against.
    let open = mqtt_broker_with(|_| {}).await;
    let mut raw = Raw::open(&open).await;
    let (_, first) = Client::first("user");
    raw.send(&connect("scram-open", SCRAM, &first)).await;
    assert_eq!(connack(&mut raw).await.0, 0x8C);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_out_of_sequence_is_refused() {
    let b = broker().await;
    // Re-authentication (0x19) in the middle of the exchange: protocol error.
    let mut raw = Raw::open(&b).await;
    let (_, first) = Client::first("user");
    raw.send(&connect("scram-seq1", SCRAM, &first)).await;
    challenge(&mut raw).await;
    raw.send(&auth(0x19, &auth_props(SCRAM, b"x"))).await;
    assert_eq!(connack(&mut raw).await.0, 0x82);
    assert!(raw.read().await.is_none(), "closed");

    // Another method than the CONNECT's: bad authentication method.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect("scram-seq2", SCRAM, &first)).await;
    challenge(&mut raw).await;
    raw.send(&auth(0x18, &auth_props("PLAIN", b"x"))).await;
    assert_eq!(connack(&mut raw).await.0, 0x8C);

    // A PUBLISH instead of the AUTH: protocol error.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect("scram-seq3", SCRAM, &first)).await;
    challenge(&mut raw).await;
    raw.send(&publish_raw(
        b"orders/1",
        0,
        0,
        false,
        false,
        b"x",
        Some(&[]),
    ))
    .await;
    assert_eq!(connack(&mut raw).await.0, 0x82);

    // After CONNACK: AUTH 0x18 with no re-authentication under way, and a
    // re-authentication with another method (MQTT-4.12.1-1): DISCONNECT 0x82.
    for bad in [
        auth(0x18, &auth_props(SCRAM, b"c=biws")),
        auth(0x19, &auth_props("PLAIN", b"x")),
    ] {
        let (mut raw, code, _, _) = login(&b, "scram-seq4", "user", "pencil").await;
        assert_eq!(code, 0);
        raw.send(&bad).await;
        let p = raw.read().await.expect("DISCONNECT");
        assert_eq!((p.kind(), p.disconnect_reason()), (14, 0x82));
        assert!(raw.read().await.is_none(), "closed");
    }
}

/// Reads an AUTH after CONNACK: (reason code, its Authentication Data).
async fn auth_packet(raw: &mut Raw) -> (u8, String) {
    let p = raw.read().await.expect("AUTH, not a close");
    assert_eq!(p.first, 0xF0, "AUTH expected: {p:?}");
    let props = properties(&p.body[1..]);
    assert_eq!(property(&props, 0x15).as_deref(), Some(SCRAM));
    (
        p.body[0],
        property(&props, 0x16).expect("Authentication Data"),
    )
}

/// MQTT 5 re-authentication (§4.12.1, as EMQX offers it): AUTH 0x19 with a new
/// client-first-message, AUTH 0x18 both ways, then AUTH 0x00 with the
/// server-final-message; the session goes on, and it can be done again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_client_re_authenticates_and_its_session_goes_on() {
    let b = broker().await;
    let (mut raw, code, _, _) = login(&b, "scram-reauth", "user", "pencil").await;
    assert_eq!(code, 0);
    raw.send(&subscribe_raw(1, "orders/+", 1, Some(&[]))).await;
    let ack = raw.read().await.expect("SUBACK");
    assert_eq!((ack.kind(), ack.body.last().copied()), (9, Some(0x01)));
    for round in 0..2u16 {
        let (client, first) = Client::first("user");
        raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
        let (reason, server_first) = auth_packet(&mut raw).await;
        assert_eq!(reason, 0x18, "continue authentication");
        let (last, server_signature) = client.last(&server_first, "pencil");
        raw.send(&auth(0x18, &auth_props(SCRAM, &last))).await;
        let (reason, server_final) = auth_packet(&mut raw).await;
        assert_eq!(reason, 0x00, "success");
        assert_eq!(
            server_final, server_signature,
            "the server proves it holds the keys"
        );
        // Still subscribed, still allowed what the user is allowed.
        raw.send(&publish_raw(
            b"orders/1",
            1,
            10 + round,
            false,
            false,
            b"after",
            Some(&[]),
        ))
        .await;
        let (mut acked, mut got) = (false, false);
        while !(acked && got) {
            let p = raw.read().await.expect("PUBACK and PUBLISH");
            match p.kind() {
                4 => {
                    assert_eq!((p.pkid(), p.ack_reason()), (10 + round, 0));
                    acked = true;
                }
                3 => {
                    assert_eq!(
                        p.publish_parts(true),
                        ("orders/1".to_string(), b"after".to_vec())
                    );
                    let pkid = p.pkid();
                    raw.send(&packet(0x40, &pkid.to_be_bytes())).await;
                    got = true;
                }
                _ => panic!("unexpected {p:?}"),
            }
        }
    }
}

/// A re-authentication that fails ends the connection with a reason
/// (MQTT-4.12.1-2): a wrong proof or another user 0x87 (Not authorized; 0x86
/// is a CONNACK code only), a second 0x19 while one is under way 0x82.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_re_authentication_disconnects_with_its_reason() {
    let b = broker().await;
    let logged_in = || async {
        let (raw, c, _, _) = login(&b, "scram-reauth-bad", "user", "pencil").await;
        assert_eq!(c, 0);
        raw
    };
    // Wrong password in the new proof.
    let mut raw = logged_in().await;
    let (client, first) = Client::first("user");
    raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
    let (_, server_first) = auth_packet(&mut raw).await;
    let (last, _) = client.last(&server_first, "not-pencil");
    raw.send(&auth(0x18, &auth_props(SCRAM, &last))).await;
    let p = raw.read().await.expect("DISCONNECT");
    assert_eq!((p.kind(), p.disconnect_reason()), (14, 0x87));
    assert!(raw.read().await.is_none(), "closed");

    // Another user than the connection's.
    let mut raw = logged_in().await;
    let (_, first) = Client::first("hashed");
    raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
    let p = raw.read().await.expect("DISCONNECT");
    assert_eq!((p.kind(), p.disconnect_reason()), (14, 0x87));

    // A second 0x19 before the first is finished.
    let mut raw = logged_in().await;
    let (_, first) = Client::first("user");
    raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
    auth_packet(&mut raw).await;
    raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
    let p = raw.read().await.expect("DISCONNECT");
    assert_eq!((p.kind(), p.disconnect_reason()), (14, 0x82));

    // A client whose CONNECT named no method cannot start one (on a broker
    // with no users: it connects with no credentials).
    let open = junction_conformance::mqtt_broker().await;
    let mut raw = Raw::open(&open).await;
    raw.send(&crate::support::connect_v5("no-method", true, 60, &[]))
        .await;
    let p = raw.read().await.expect("CONNACK");
    assert_eq!((p.kind(), p.body[1]), (2, 0));
    raw.send(&auth(0x19, &auth_props(SCRAM, &first))).await;
    let p = raw.read().await.expect("DISCONNECT");
    assert_eq!((p.kind(), p.disconnect_reason()), (14, 0x82));
}

/// A wrong SCRAM proof counts as a failed login, as a wrong password does:
/// after `ban_after_failures` of them the address is banned, and then even the
/// right proof is refused (0x86), as is a password login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proofs_count_toward_the_address_ban() {
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("user", "pencil")];
        c.auth.ban_after_failures = 3;
    })
    .await;
    for i in 0..3 {
        let (_, code, _, _) = login(&b, &format!("scram-guess{i}"), "user", "wrong").await;
        assert_eq!(code, 0x86);
    }
    let (_, code, _, _) = login(&b, "scram-right", "user", "pencil").await;
    assert_eq!(code, 0x86, "the banned address is refused");
    let mut o = crate::support::v5_options(&b, "password-right");
    o.set_credentials("user", "pencil");
    assert!(crate::support::V5::try_connect(o).await.is_err());
}

/// The CONNECT timeout (10 s) bounds the exchange: a client that never sends
/// its client-final-message is closed without CONNACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_exchange_is_closed() {
    let b = broker().await;
    let mut raw = Raw::open(&b).await;
    let (_, first) = Client::first("user");
    raw.send(&connect("scram-silent", SCRAM, &first)).await;
    challenge(&mut raw).await;
    assert_eq!(
        raw.read_within(crate::support::LONG_GUARD).await,
        None,
        "closed, no CONNACK"
    );
}

/// RFC 5802 hashes Normalize(password), SASLprep (RFC 4013): a user configured
/// with `I<U+00AD>X` (a soft hyphen, which SASLprep removes) logs in with the
/// proof a normalising client computes from "IX", and so does a user whose
/// password is U+2168 (ROMAN NUMERAL NINE, "IX" after NFKC). RFC 4013's own
/// examples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_sasl_prepared_as_rfc_5802_asks() {
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![
            User::new("soft", "I\u{00AD}X"),
            User::new("roman", "\u{2168}"),
        ]
    })
    .await;
    for (i, user) in ["soft", "roman"].into_iter().enumerate() {
        let (_raw, code, props, server_signature) =
            login(&b, &format!("saslprep-{i}"), user, "IX").await;
        assert_eq!(code, 0, "{user}: CONNACK success: {props:?}");
        assert_eq!(property(&props, 0x16), Some(server_signature));
    }
    // A client that does not normalise hashes the soft hyphen too: the keys
    // are the prepared password's, so its proof does not match.
    let (_raw, code, _, _) = login(&b, "saslprep-raw", "soft", "I\u{00AD}X").await;
    assert_eq!(code, 0x86);
}
