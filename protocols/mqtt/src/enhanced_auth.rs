//! The I/O side of MQTT 5 enhanced authentication: carries the SCRAM-SHA-256
//! messages of [`crate::auth`] between the client (CONNECT, AUTH) and the
//! engine, which checks the proof. Called from one place in
//! `connection.rs::connect()`, before CONNACK.

use crate::broker::MqttBroker;
use crate::connection::{WRITE_DEADLINE, send_connack_error};
use crate::frame::{In, lift};
use crate::io::MqttIo;
use bytestring::ByteString;
use junction_api::{Credentials, EngineError, Identity};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::{MqttPacket, v5};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A client that passed enhanced authentication.
pub(crate) struct Enhanced {
    pub user: String,
    pub identity: Identity,
    /// The server-final-message, for CONNACK's Authentication Data.
    pub server_final: bytes::Bytes,
}

/// MQTT 5 enhanced authentication: the AUTH exchange a CONNECT with an
/// Authentication Method begins (SCRAM-SHA-256, `auth.rs`), within the CONNECT
/// timeout. `None`: the client was refused (and told, in CONNACK).
pub(crate) async fn enhanced_auth<S>(
    broker: &Arc<MqttBroker>,
    framed: &mut MqttIo<S>,
    method: String,
    data: &[u8],
    remote: SocketAddr,
    client_id: Option<&str>,
) -> Option<Enhanced>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use crate::auth::{SCRAM_SHA_256, ScramServer};
    let cid = client_id.unwrap_or("");
    let refuse = |code: u8, why: &str| {
        tracing::info!(%remote, client_id = cid, code, "MQTT CONNECT refused (enhanced authentication): {why}");
    };
    if method != SCRAM_SHA_256 || !broker.engine.auth_required() {
        let why = if method != SCRAM_SHA_256 {
            format!("authentication method '{method}' is not supported (only {SCRAM_SHA_256})")
        } else {
            "enhanced authentication is off: the server requires no credentials".to_owned()
        };
        refuse(0x8C, &why);
        send_connack_error(framed, true, 0x8C, &why).await;
        return None;
    }
    // Every refusal once the user is known goes through the engine, which
    // counts it as a failed login (and may answer that the client is banned).
    let failed = |user: &str, auth_message: String, proof: Vec<u8>| {
        let creds = Credentials::ScramSha256 {
            user: user.to_owned(),
            auth_message,
            proof,
        };
        broker
            .engine
            .authenticate_client(&creds, remote.ip(), client_id)
    };
    let first = match crate::auth::client_first(data) {
        Ok(f) => f,
        Err(e) => {
            refuse(0x86, &e.to_string());
            send_connack_error(framed, true, 0x86, &e.to_string()).await;
            return None;
        }
    };
    // (Users without a clear-text password get made-up keys, as unknown users
    // do: their exchange ends in 0x86 like a wrong password.)
    let Some(keys) = broker.engine.scram_sha256(&first.user) else {
        let why = "SCRAM-SHA-256 is not available: the broker has no users";
        refuse(0x8C, why);
        send_connack_error(framed, true, 0x8C, why).await;
        return None;
    };
    let server = ScramServer::new(first, keys, &crate::auth::server_nonce());
    let challenge = v5::Auth {
        reason_code: v5::AuthReasonCode::ContinueAuth,
        auth_method: Some(ByteString::from_static(SCRAM_SHA_256)),
        auth_data: Some(bytes::Bytes::copy_from_slice(
            server.server_first().as_bytes(),
        )),
        ..Default::default()
    };
    let sent = tokio::time::timeout(
        WRITE_DEADLINE,
        framed.send(MqttPacket::V5(v5::Packet::Auth(challenge))),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return None;
    }
    let timeout = broker.options.connect_timeout;
    let answer = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok((packet, _)))) => lift(packet),
        Ok(Some(Err(DecodeError::Io(_)))) | Ok(None) => return None,
        Ok(Some(Err(e))) => {
            tracing::warn!(%remote, client_id = cid, "MQTT: malformed packet in enhanced authentication, closing: {e}");
            send_connack_error(framed, true, 0x81, &e.to_string()).await;
            return None;
        }
        Err(_) => {
            refuse(0x87, &format!("no AUTH within {timeout:?}"));
            return None;
        }
    };
    let data = match answer {
        In::Auth {
            reason: 0x18,
            method: Some(m),
            data,
        } if m == SCRAM_SHA_256 => data.unwrap_or_default(),
        In::Auth {
            reason: 0x18,
            method: Some(m),
            ..
        } => {
            let why = format!("AUTH names method '{m}', CONNECT named {SCRAM_SHA_256}");
            refuse(0x8C, &why);
            send_connack_error(framed, true, 0x8C, &why).await;
            return None;
        }
        In::Disconnect { .. } => return None,
        other => {
            let why = match other {
                In::Auth { method: None, .. } => "AUTH without an authentication method",
                In::Auth { .. } => "AUTH out of sequence (expected 0x18, continue authentication)",
                _ => "a packet other than AUTH during enhanced authentication",
            };
            refuse(0x82, why);
            send_connack_error(framed, true, 0x82, why).await;
            return None;
        }
    };
    let (proof, result) = match server.client_final(&data) {
        Ok(proof) => {
            let result = failed(
                server.user(),
                proof.auth_message.clone(),
                proof.proof.clone(),
            );
            (Some(proof), result)
        }
        Err(e) => {
            refuse(0x86, &e.to_string());
            (None, failed(server.user(), String::new(), Vec::new()))
        }
    };
    match (proof, result) {
        (Some(proof), Ok(identity)) => Some(Enhanced {
            user: server.user().to_owned(),
            identity,
            server_final: bytes::Bytes::from(server.server_final(&proof)),
        }),
        (_, Err(EngineError::Banned)) => {
            refuse(0x8A, "client id banned");
            send_connack_error(framed, true, 0x8A, "banned").await;
            None
        }
        _ => {
            refuse(0x86, "SCRAM proof does not match");
            send_connack_error(framed, true, 0x86, "bad user name or password").await;
            None
        }
    }
}
