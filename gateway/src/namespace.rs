//! The one naming rule for Socket.IO namespace paths.
//!
//! A namespace path travels inside Socket.IO packets (`40/chat,`), Redis channel names and
//! Kubernetes objects. The gateway, the adapter and the RealtimeNamespace CRD therefore accept
//! exactly the same set: `/`, or `/` followed by 1 to 63 lowercase ASCII letters, digits and
//! hyphens that neither start nor end with a hyphen (a DNS label). Commas end the namespace in the
//! packet format, `#` and `?` carry meaning in channel names and URLs, and non-ASCII text has more
//! than one spelling, so all of them are rejected.

use thiserror::Error;

/// The rule as a regular expression, for the CRD's OpenAPI schema and for admission checks.
/// `validate_path` implements exactly this pattern; a unit test checks the two agree.
pub const PATH_PATTERN: &str = r"^/$|^/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Maximum length of the part after the leading `/`, the length of a DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Reasons a namespace path breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamespaceError {
    #[error("namespace path is empty; use \"/\" for the main namespace")]
    Empty,
    #[error("namespace path {path:?} must start with \"/\"")]
    MissingLeadingSlash { path: String },
    #[error("namespace path {path:?} is {len} bytes after the \"/\"; the maximum is {MAX_NAME_LEN}")]
    TooLong { path: String, len: usize },
    #[error(
        "namespace path {path:?} contains {character:?} at byte {position}; only lowercase ASCII \
         letters, digits and hyphens are allowed after the \"/\""
    )]
    InvalidCharacter {
        path: String,
        character: char,
        position: usize,
    },
    #[error("namespace path {path:?} must not start or end with a hyphen")]
    HyphenAtEdge { path: String },
}

/// Checks `path` against [`PATH_PATTERN`].
pub fn validate_path(path: &str) -> Result<(), NamespaceError> {
    if path.is_empty() {
        return Err(NamespaceError::Empty);
    }
    let Some(name) = path.strip_prefix('/') else {
        return Err(NamespaceError::MissingLeadingSlash { path: path.to_owned() });
    };
    if name.is_empty() {
        return Ok(());
    }

    // Characters are checked before the length so a long name with a bad character names the
    // character, which is the more useful message.
    for (index, character) in name.char_indices() {
        let allowed = character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-';
        if !allowed {
            return Err(NamespaceError::InvalidCharacter {
                path: path.to_owned(),
                character,
                position: index + 1,
            });
        }
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NamespaceError::TooLong {
            path: path.to_owned(),
            len: name.len(),
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NamespaceError::HyphenAtEdge { path: path.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPTED: &[&str] = &["/", "/a", "/0", "/calls", "/chat-room-2", "/a-b", "/9lives"];

    fn rejected() -> Vec<String> {
        let mut names: Vec<String> = [
            "",
            "chat",
            "/Acme, Inc.",
            "/tenant,x",
            "/chat?x=1",
            "/café",
            "/a#b",
            "/A",
            "/-a",
            "/a-",
            "/-",
            "//",
            "/a/b",
            "/a b",
            "/a_b",
            "/a.b",
            "/a\u{0}",
        ]
        .iter()
        .map(|name| name.to_string())
        .collect();
        names.push(format!("/{}", "a".repeat(300)));
        names.push(format!("/{}", "a".repeat(MAX_NAME_LEN + 1)));
        names
    }

    #[test]
    fn accepts_dns_label_paths() {
        for path in ACCEPTED {
            assert_eq!(validate_path(path), Ok(()), "{path:?} should be accepted");
        }
        let longest = format!("/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(validate_path(&longest), Ok(()));
    }

    #[test]
    fn rejects_field_case_names() {
        for path in rejected() {
            assert!(validate_path(&path).is_err(), "{path:?} should be rejected");
        }
    }

    #[test]
    fn rejection_names_the_character() {
        let err = validate_path("/tenant,x").unwrap_err();
        assert_eq!(
            err,
            NamespaceError::InvalidCharacter {
                path: "/tenant,x".into(),
                character: ',',
                position: 7
            }
        );
    }

    #[test]
    fn pattern_and_validator_agree() {
        let pattern = regex::Regex::new(PATH_PATTERN).expect("PATH_PATTERN compiles");
        let mut paths: Vec<String> = ACCEPTED.iter().map(|p| p.to_string()).collect();
        paths.extend(rejected());
        paths.push(format!("/{}", "a".repeat(MAX_NAME_LEN)));
        for path in &paths {
            assert_eq!(
                pattern.is_match(path),
                validate_path(path).is_ok(),
                "PATH_PATTERN and validate_path disagree on {path:?}"
            );
        }
    }
}
