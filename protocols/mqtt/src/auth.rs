//! MQTT 5 enhanced authentication with SCRAM-SHA-256 (RFC 5802, RFC 7677), as
//! EMQX offers it: the CONNECT's Authentication Data is the client-first-message,
//! the server answers AUTH 0x18 with the server-first-message, the client AUTH
//! 0x18 with the client-final-message, and CONNACK carries the
//! server-final-message (`v=…`).
//!
//! This module only reads and writes the SCRAM messages; it does no I/O and
//! checks no proof. The connection driver (`connection.rs`) carries the
//! messages, and the engine checks the proof
//! ([`junction_api::Credentials::ScramSha256`]), so bans and failure counting
//! apply as to a password. Channel binding (`p=`) is not offered; an
//! authorization identity (`a=`) is accepted only when it is the user itself.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use junction_api::scram::ScramCredentials;

/// The one Authentication Method the broker knows.
pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// A SCRAM message that cannot go on. Each is answered with CONNACK 0x86 and
/// its text as the reason string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ScramError {
    /// The client-first-message does not parse.
    #[error("SCRAM client-first-message is malformed: {0}")]
    MalformedFirst(&'static str),
    /// The client-final-message does not parse.
    #[error("SCRAM client-final-message is malformed: {0}")]
    MalformedFinal(&'static str),
    /// The client asked for what the broker does not offer.
    #[error("SCRAM: {0} is not supported")]
    Unsupported(&'static str),
    /// The client-final-message does not continue this exchange.
    #[error("SCRAM client-final-message does not match the exchange: {0}")]
    Mismatch(&'static str),
}

/// A parsed client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// The user name (`n=`), unescaped.
    pub user: String,
    /// `gs2-header` (`n,,` or `y,,` or with `a=`), as the client sent it.
    gs2_header: String,
    /// `client-first-message-bare`.
    bare: String,
    /// The client's nonce (`r=`).
    nonce: String,
}

/// Reads a client-first-message (RFC 5802 §7).
pub(crate) fn client_first(data: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(data).map_err(|_| ScramError::MalformedFirst("not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::MalformedFirst("no gs2 header"));
    };
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
        _ => return Err(ScramError::MalformedFirst("bad channel binding flag")),
    }
    let mut attrs = bare.split(',');
    if bare.starts_with("m=") {
        return Err(ScramError::Unsupported("a mandatory extension (m=)"));
    }
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(ScramError::MalformedFirst("no user name (n=)"))
        .and_then(|n| unescape(n).ok_or(ScramError::MalformedFirst("bad user name")))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|r| !r.is_empty() && r.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
        .ok_or(ScramError::MalformedFirst("no nonce (r=)"))?;
    if user.is_empty() {
        return Err(ScramError::MalformedFirst("empty user name"));
    }
    if !authzid.is_empty() {
        let a = authzid
            .strip_prefix("a=")
            .and_then(unescape)
            .ok_or(ScramError::MalformedFirst("bad authorization identity"))?;
        if a != user {
            return Err(ScramError::Unsupported(
                "an authorization identity other than the user",
            ));
        }
    }
    Ok(ClientFirst {
        gs2_header: format!("{cbind},{authzid},"),
        bare: bare.to_string(),
        nonce: nonce.to_string(),
        user,
    })
}

/// `saslname` → user name: `=2C` is `,` and `=3D` is `=`; any other `=` is wrong.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A nonce for the server's half: 18 random bytes, base64 (printable, no `,`).
pub(crate) fn server_nonce() -> String {
    STANDARD.encode(rand::random::<[u8; 18]>())
}

/// The server's side of one exchange, after the client-first-message.
#[derive(Debug)]
pub(crate) struct ScramServer {
    first: ClientFirst,
    /// The client's nonce followed by the server's.
    nonce: String,
    server_first: String,
    keys: ScramCredentials,
}

/// What the client-final-message proves, for the engine to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proof {
    /// `client-first-bare,server-first,client-final-without-proof`.
    pub auth_message: String,
    /// The ClientProof, decoded.
    pub proof: Vec<u8>,
}

impl ScramServer {
    /// Starts the server's side with the user's keys and a fresh `server_nonce`.
    pub(crate) fn new(first: ClientFirst, keys: ScramCredentials, server_nonce: &str) -> Self {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&keys.salt),
            keys.iterations
        );
        ScramServer {
            first,
            nonce,
            server_first,
            keys,
        }
    }

    /// The user the client named.
    pub(crate) fn user(&self) -> &str {
        &self.first.user
    }

    /// The server-first-message (`r=…,s=…,i=…`), sent in AUTH 0x18.
    pub(crate) fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Reads the client-final-message (`c=…,r=…,p=…`): the channel binding
    /// must repeat the gs2 header, the nonce must be this exchange's.
    pub(crate) fn client_final(&self, data: &[u8]) -> Result<Proof, ScramError> {
        let text =
            std::str::from_utf8(data).map_err(|_| ScramError::MalformedFinal("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::MalformedFinal("no proof (p=)"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .and_then(|c| STANDARD.decode(c).ok())
            .ok_or(ScramError::MalformedFinal("no channel binding (c=)"))?;
        if binding != self.first.gs2_header.as_bytes() {
            return Err(ScramError::Mismatch("channel binding (c=)"));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::MalformedFinal("no nonce (r=)"))?;
        if nonce != self.nonce {
            return Err(ScramError::Mismatch("nonce (r=)"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::MalformedFinal("proof (p=) is not base64"))?;
        Ok(Proof {
            auth_message: format!("{},{},{without_proof}", self.first.bare, self.server_first),
            proof,
        })
    }

    /// The server-final-message (`v=…`) for a proof the engine accepted.
    pub(crate) fn server_final(&self, proof: &Proof) -> String {
        format!(
            "v={}",
            STANDARD.encode(self.keys.server_signature(proof.auth_message.as_bytes()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3, the whole exchange: user "user", password "pencil".
    #[test]
    fn rfc_7677_exchange() {
        let first = client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("client-first");
        assert_eq!(first.user, "user");
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let keys = ScramCredentials::derive(b"pencil", salt, 4096);
        let server = ScramServer::new(first, keys.clone(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let proof = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("client-final");
        assert!(keys.verify(proof.auth_message.as_bytes(), &proof.proof));
        assert_eq!(
            server.server_final(&proof),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // The proof of another password does not verify.
        let other = ScramCredentials::derive(b"pencil2", keys.salt.clone(), 4096);
        assert!(!other.verify(proof.auth_message.as_bytes(), &proof.proof));
    }

    #[test]
    fn client_final_must_continue_the_exchange() {
        let first = client_first(b"n,,n=user,r=abc").expect("client-first");
        let keys = ScramCredentials::derive(b"pencil", vec![1; 16], 4096);
        let server = ScramServer::new(first, keys, "xyz");
        assert_eq!(
            server.client_final(b"c=biws,r=abcXYZ,p=AAAA"),
            Err(ScramError::Mismatch("nonce (r=)"))
        );
        assert_eq!(
            server.client_final(b"c=eSws,r=abcxyz,p=AAAA"),
            Err(ScramError::Mismatch("channel binding (c=)"))
        );
        assert!(matches!(
            server.client_final(b"c=biws,r=abcxyz"),
            Err(ScramError::MalformedFinal(_))
        ));
        assert!(server.client_final(b"c=biws,r=abcxyz,p=AAAA").is_ok());
    }

    #[test]
    fn client_first_rules() {
        let f = client_first(b"n,,n=a=2Cb=3Dc,r=nonce").expect("escaped name");
        assert_eq!(f.user, "a,b=c");
        assert!(client_first(b"n,a=bob,n=bob,r=x").is_ok());
        assert_eq!(
            client_first(b"n,a=eve,n=bob,r=x"),
            Err(ScramError::Unsupported(
                "an authorization identity other than the user"
            ))
        );
        assert_eq!(
            client_first(b"p=tls-unique,,n=bob,r=x"),
            Err(ScramError::Unsupported("channel binding"))
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,n=bob",
            b"n,,r=x,n=bob",
            b"n,,n=,r=x",
            b"n,,n=b=ob,r=x",
            b"x,,n=bob,r=x",
            b"\xff",
        ] {
            assert!(client_first(bad).is_err(), "{bad:?}");
        }
    }
}
