//! Who may connect: users with passwords, or a single token, shared by every protocol.

use junction_api::{Credentials, EngineError, TenantId};
use serde::{Deserialize, Serialize};

/// A user allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name.
    pub user: String,
    /// Password, in clear text.
    pub password: String,
}

/// The credentials the broker accepts. Empty means anyone may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authenticator {
    users: Vec<User>,
    token: Option<String>,
}

/// Compares in time that depends only on the lengths, not on where bytes differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Authenticator {
    /// An authenticator for these users and this token.
    pub fn new(users: Vec<User>, token: Option<String>) -> Self {
        Authenticator { users, token }
    }

    /// Does anything need credentials?
    pub fn required(&self) -> bool {
        !self.users.is_empty() || self.token.is_some()
    }

    /// Checks credentials; the tenant is the default until multi-tenancy lands.
    pub fn check(&self, credentials: &Credentials) -> Result<TenantId, EngineError> {
        if !self.required() {
            return Ok(TenantId::default_tenant());
        }
        let ok = match credentials {
            Credentials::UserPassword { user, password } => self
                .users
                .iter()
                .any(|u| u.user == *user && same_secret(&u.password, password)),
            Credentials::Token(token) => {
                self.token.as_deref().is_some_and(|t| same_secret(t, token))
            }
            _ => false,
        };
        if ok {
            Ok(TenantId::default_tenant())
        } else {
            Err(EngineError::AuthorizationViolation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_token() {
        let a = Authenticator::new(
            vec![User {
                user: "u".into(),
                password: "p".into(),
            }],
            Some("t".into()),
        );
        assert!(a.required());
        let up = |u: &str, p: &str| Credentials::UserPassword {
            user: u.into(),
            password: p.into(),
        };
        assert!(a.check(&up("u", "p")).is_ok());
        assert!(a.check(&up("u", "x")).is_err());
        assert!(a.check(&Credentials::Token("t".into())).is_ok());
        assert!(a.check(&Credentials::Token("tt".into())).is_err());
        assert!(a.check(&Credentials::None).is_err());
        assert!(Authenticator::default().check(&Credentials::None).is_ok());
    }
}
