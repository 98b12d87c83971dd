//! SCRAM-SHA-256 keys and proofs (RFC 5802, RFC 7677): the arithmetic both
//! sides of the seam need. The engine derives a user's keys from a clear-text
//! password and checks a client's proof; a front-end signs the exchange with
//! the server key. The messages themselves (`n=…,r=…`) belong to the front-end
//! that carries them (MQTT 5 AUTH); nothing here does I/O.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The iteration count Junction derives keys with (RFC 7677's minimum, and
/// what EMQX uses by default).
pub const ITERATIONS: u32 = 4096;

/// What a server keeps of a user's password for SCRAM-SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The salt the client salts its password with.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys let anyone who holds them impersonate the server.
        f.debug_struct("ScramCredentials")
            .field("salt", &self.salt)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// `HMAC-SHA-256(key, data)`.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl ScramCredentials {
    /// Derives the keys from a clear-text password (RFC 5802 §3:
    /// `SaltedPassword = Hi(password, salt, i)`, PBKDF2-HMAC-SHA-256). The
    /// password is used as given: the caller applies SASLprep (the engine's
    /// `scram_sha256` does).
    pub fn derive(password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramCredentials {
            salt,
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Does `proof` (the client-final-message's `p=`, decoded) prove that the
    /// client knows the password, for this `auth_message`
    /// (`client-first-bare,server-first,client-final-without-proof`)?
    pub fn verify(&self, auth_message: &[u8], proof: &[u8]) -> bool {
        if proof.len() != 32 {
            return false;
        }
        let signature = hmac(&self.stored_key, auth_message);
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        // In time that does not depend on where the keys differ.
        stored
            .iter()
            .zip(self.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The server's signature of `auth_message`, sent as `v=` in the
    /// server-final-message so that the client knows the server holds its keys.
    pub fn server_signature(&self, auth_message: &[u8]) -> [u8; 32] {
        hmac(&self.server_key, auth_message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// RFC 7677 §3: user "user", password "pencil", salt (base64)
    /// `W22ZaJ0SNY7soEsUEjb6gQ==`, 4096 iterations.
    #[test]
    fn rfc_7677_vector() {
        let salt = hex("5b6d99689d12358eeca04b141236fa81");
        let c = ScramCredentials::derive(b"pencil", salt, 4096);
        let auth = b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        // p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=
        let proof = hex("747cdb65aa56224e2352137e52d7bdcad6a0f738df30782caa69a2cfb0277554");
        assert!(c.verify(auth, &proof));
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!c.verify(auth, &wrong));
        assert!(!c.verify(auth, &proof[..31]));
        // v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        assert_eq!(
            c.server_signature(auth).to_vec(),
            hex("eabae24d1062db75a9451ff0b6ea7e98c8546549ff741e672d3251b2397de46e")
        );
    }
}
