//! JWT verification for the socket.io `auth` payload and the rooms its claims grant.
//!
//! A client sends `{ token: "<jwt>" }` as its `auth` payload. The gateway checks the token's
//! signature, `exp`, `nbf` when the token has one and, when configured, `iss` and `aud`. Two array claims, named by flags, list
//! the rooms the socket may join and the rooms it may publish to. `"*"` grants every room.

use std::collections::HashSet;
use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use thiserror::Error;

use crate::config::{Config, JwtAlgorithm};

/// Reasons a key cannot be loaded or a token is rejected.
#[derive(Debug, Error)]
pub enum AuthError {
    // `error` is part of each message and deliberately not a `source`, so it is printed once.
    #[error("failed to read --auth-key-file {path}: {error}")]
    ReadKey { path: PathBuf, error: std::io::Error },
    #[error("invalid key in --auth-key-file {path} for {algorithm:?}: {error}")]
    ParseKey {
        path: PathBuf,
        algorithm: JwtAlgorithm,
        error: jsonwebtoken::errors::Error,
    },
    #[error("missing token: send {{ token: \"<jwt>\" }} as the socket.io auth payload")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(jsonwebtoken::errors::Error),
    #[error("invalid token: claim {claim:?} must be an array of room names (strings), such as [\"lobby\"] or [\"*\"]")]
    InvalidRoomClaim { claim: String },
}

/// Rooms a token grants for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrant {
    Any,
    Only(HashSet<String>),
}

impl RoomGrant {
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomGrant::Any => true,
            RoomGrant::Only(rooms) => rooms.contains(room),
        }
    }

    /// Reads the claim named `name`. A missing claim grants no room; a claim that is not an array
    /// of strings is an error, so a token issuer's mistake is reported instead of granting nothing.
    fn from_claim(name: &str, claim: Option<&Value>) -> Result<RoomGrant, AuthError> {
        let Some(claim) = claim else {
            return Ok(RoomGrant::Only(HashSet::new()));
        };
        let invalid = || AuthError::InvalidRoomClaim { claim: name.to_owned() };
        let names = claim
            .as_array()
            .ok_or_else(invalid)?
            .iter()
            .map(|room| room.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<HashSet<_>, _>>()?;
        if names.contains("*") {
            Ok(RoomGrant::Any)
        } else {
            Ok(RoomGrant::Only(names))
        }
    }
}

/// Permissions a verified token grants a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The `sub` claim, the user the per-user limit counts.
    pub subject: Option<String>,
    pub join: RoomGrant,
    pub publish: RoomGrant,
}

impl Grants {
    /// Grants of a socket when auth is off: every room.
    pub fn unrestricted() -> Grants {
        Grants {
            subject: None,
            join: RoomGrant::Any,
            publish: RoomGrant::Any,
        }
    }
}

/// Verifies tokens with the key from --auth-key-file.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    rooms_claim: String,
    publish_claim: String,
}

impl Verifier {
    /// Loads the key; returns `None` when auth is off (no --auth-key-file).
    pub fn from_config(config: &Config) -> Result<Option<Verifier>, AuthError> {
        let Some(path) = &config.auth_key_file else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|error| AuthError::ReadKey {
            path: path.clone(),
            error,
        })?;
        let parse_error = |error| AuthError::ParseKey {
            path: path.clone(),
            algorithm: config.auth_algorithm,
            error,
        };
        let (key, algorithm) = match config.auth_algorithm {
            // A Secret mounted as a file often ends with a newline that is not part of the key.
            JwtAlgorithm::Hs256 => (
                DecodingKey::from_secret(trim_newline(&bytes)).map_err(parse_error)?,
                Algorithm::HS256,
            ),
            JwtAlgorithm::Rs256 => (
                DecodingKey::from_rsa_pem(&bytes).map_err(parse_error)?,
                Algorithm::RS256,
            ),
            JwtAlgorithm::Es256 => (DecodingKey::from_ec_pem(&bytes).map_err(parse_error)?, Algorithm::ES256),
            JwtAlgorithm::EdDsa => (DecodingKey::from_ed_pem(&bytes).map_err(parse_error)?, Algorithm::EdDSA),
        };

        let mut validation = Validation::new(algorithm);
        // jsonwebtoken 12 checks `nbf` only when asked; a token with one is not valid before it.
        validation.validate_nbf = true;
        match &config.auth_audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.auth_issuer {
            validation.set_issuer(&[issuer]);
        }
        Ok(Some(Verifier {
            key,
            validation,
            rooms_claim: config.auth_rooms_claim.clone(),
            publish_claim: config.auth_publish_claim.clone(),
        }))
    }

    /// Verifies the token in a socket.io `auth` payload and returns what it grants.
    pub fn verify(&self, auth: Option<&Value>) -> Result<Grants, AuthError> {
        let token = auth
            .and_then(|auth| auth.get("token"))
            .and_then(Value::as_str)
            .ok_or(AuthError::MissingToken)?;
        let data =
            jsonwebtoken::decode::<Value>(token, &self.key, &self.validation).map_err(AuthError::InvalidToken)?;
        let claims = data.claims;
        Ok(Grants {
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            join: RoomGrant::from_claim(&self.rooms_claim, claims.get(&self.rooms_claim))?,
            publish: RoomGrant::from_claim(&self.publish_claim, claims.get(&self.publish_claim))?,
        })
    }
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn verifier(secret: &[u8]) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        Verifier {
            key: DecodingKey::from_secret(secret).unwrap(),
            validation,
            rooms_claim: "rooms".into(),
            publish_claim: "publish".into(),
        }
    }

    fn token(secret: &[u8], claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    #[test]
    fn grants_rooms_from_claims() {
        let token = token(
            b"k",
            json!({"sub": "u1", "exp": in_an_hour(), "rooms": ["a", "b"], "publish": ["*"]}),
        );
        let grants = verifier(b"k").verify(Some(&json!({ "token": token }))).unwrap();
        assert_eq!(grants.subject.as_deref(), Some("u1"));
        assert!(grants.join.allows("a"));
        assert!(!grants.join.allows("c"));
        assert!(grants.publish.allows("anything"));
    }

    #[test]
    fn room_claim_of_wrong_type_is_rejected() {
        let verifier = verifier(b"secret");
        for rooms in [json!("*"), json!({"a": true}), json!(["a", 1])] {
            let auth = json!({ "token": token(b"secret", json!({"exp": in_an_hour(), "rooms": rooms})) });
            let err = verifier.verify(Some(&auth)).unwrap_err();
            assert!(matches!(err, AuthError::InvalidRoomClaim { .. }), "{rooms}: {err}");
            assert!(err.to_string().contains("\"rooms\""), "{err}");
        }
    }

    #[test]
    fn missing_claims_grant_nothing() {
        let token = token(b"k", json!({"exp": in_an_hour()}));
        let grants = verifier(b"k").verify(Some(&json!({ "token": token }))).unwrap();
        assert!(!grants.join.allows("a"));
        assert!(!grants.publish.allows("a"));
    }

    #[test]
    fn rejects_wrong_key_expired_and_missing_tokens() {
        let wrong = token(b"other", json!({"exp": in_an_hour()}));
        assert!(matches!(
            verifier(b"k").verify(Some(&json!({ "token": wrong }))),
            Err(AuthError::InvalidToken(_))
        ));
        let expired = token(b"k", json!({"exp": 1000}));
        assert!(matches!(
            verifier(b"k").verify(Some(&json!({ "token": expired }))),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(verifier(b"k").verify(None), Err(AuthError::MissingToken)));
        assert!(matches!(
            verifier(b"k").verify(Some(&json!({ "token": 5 }))),
            Err(AuthError::MissingToken)
        ));
    }

    #[test]
    fn rejects_token_before_its_nbf() {
        let key_file = std::env::temp_dir().join(format!("socketfleet-auth-nbf-{}.key", std::process::id()));
        std::fs::write(&key_file, b"k").unwrap();
        let config =
            Config::from_env_pairs([("SOCKETFLEET_AUTH_KEY_FILE".to_string(), key_file.display().to_string())])
                .unwrap();
        let verifier = Verifier::from_config(&config).unwrap().expect("auth is on");
        std::fs::remove_file(&key_file).unwrap();

        let now = in_an_hour() - 3600;
        let early = token(b"k", json!({"exp": now + 7200, "nbf": now + 3600}));
        let result = verifier.verify(Some(&json!({ "token": early })));
        assert!(
            matches!(&result, Err(AuthError::InvalidToken(err)) if *err.kind() == jsonwebtoken::errors::ErrorKind::ImmatureSignature),
            "{result:?}"
        );
        let valid = token(b"k", json!({"exp": now + 7200, "nbf": now - 10}));
        assert!(verifier.verify(Some(&json!({ "token": valid }))).is_ok());
    }

    #[test]
    fn trims_trailing_newlines_of_secrets() {
        assert_eq!(trim_newline(b"secret\n"), b"secret");
        assert_eq!(trim_newline(b"secret\r\n"), b"secret");
        assert_eq!(trim_newline(b"\n"), b"");
    }
}
