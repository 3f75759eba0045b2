use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::syntax::{self, Issue};
use crate::text::describe_char;

/// Longest secret path, in bytes.
pub const MAX_PATH_BYTES: usize = 512;
/// Most segments a secret path may have.
pub const MAX_SEGMENTS: usize = 32;
/// Longest single segment, in characters (which are all ASCII, so also bytes).
pub const MAX_SEGMENT_CHARS: usize = 128;

/// Words that may not be the last segment of a secret path, because the HTTP
/// API uses them as sub-resources (`/v1/secrets/{path}/versions` and so on)
/// and a secret with such a name would be unreachable or ambiguous.
pub const RESERVED_SEGMENTS: [&str; 5] = ["versions", "rotate", "metadata", "undelete", "destroy"];

/// A validated secret path such as `prod/db/main`.
///
/// Paths are compared byte for byte and are never normalised: anything that
/// would need cleaning up (`//`, `./`, `%2F`, backslashes, non-ASCII) is
/// rejected instead, so two spellings can never name the same secret and a
/// policy written for one spelling cannot be bypassed with another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretPath(String);

impl SecretPath {
    /// Validates `s` as a secret path.
    pub fn parse(s: &str) -> Result<SecretPath, PathError> {
        syntax::check(s, false).map_err(PathError::from)?;
        let last = s.rsplit('/').next().unwrap_or(s);
        if let Some(word) = RESERVED_SEGMENTS.iter().find(|w| **w == last) {
            return Err(PathError::ReservedSegment(word));
        }
        Ok(SecretPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments in order; there is always at least one.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    pub fn last_segment(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl AsRef<str> for SecretPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SecretPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretPath::parse(s)
    }
}

impl Serialize for SecretPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SecretPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a valid secret path. Messages never repeat the input,
/// which may be long or hostile; they point at a byte position or segment
/// index (both zero-based) instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is {len} bytes long, the maximum is {MAX_PATH_BYTES}")]
    TooLong { len: usize },
    #[error("path has {count} segments, the maximum is {MAX_SEGMENTS}")]
    TooManySegments { count: usize },
    /// Covers a leading or trailing `/` and `//`.
    #[error("path segment {index} is empty (leading, trailing or doubled '/')")]
    EmptySegment { index: usize },
    #[error("path segment {index} is '.' or '..', which are not allowed")]
    DotSegment { index: usize },
    /// `character` is `Some` only for printable ASCII.
    #[error(
        "invalid character {} at byte {position}, allowed are A-Z a-z 0-9 . _ - and '/' between segments",
        describe_char(*.character)
    )]
    InvalidCharacter { position: usize, character: Option<char> },
    #[error("path segment {index} is {len} characters long, the maximum is {MAX_SEGMENT_CHARS}")]
    SegmentTooLong { index: usize, len: usize },
    #[error("the last path segment may not be the reserved word '{0}'")]
    ReservedSegment(&'static str),
}

impl From<Issue> for PathError {
    fn from(issue: Issue) -> Self {
        match issue {
            Issue::Empty => PathError::Empty,
            Issue::TooLong { len } => PathError::TooLong { len },
            Issue::TooManySegments { count } => PathError::TooManySegments { count },
            Issue::EmptySegment { index } => PathError::EmptySegment { index },
            Issue::DotSegment { index } => PathError::DotSegment { index },
            Issue::InvalidCharacter { position, character } => {
                PathError::InvalidCharacter { position, character }
            }
            Issue::SegmentTooLong { index, len } => PathError::SegmentTooLong { index, len },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), PathError>) {
        let got = SecretPath::parse(input);
        match expected {
            Ok(()) => {
                let path = got.unwrap_or_else(|e| panic!("{input:?} should parse, got {e}"));
                assert_eq!(path.as_str(), input);
                assert_eq!(path.to_string(), input);
                assert_eq!(path.segments().collect::<Vec<_>>().join("/"), input);
                assert_eq!(Some(path.last_segment()), input.rsplit('/').next());
            }
            Err(want) => assert_eq!(got, Err(want), "input {input:?}"),
        }
    }

    fn invalid(position: usize, character: Option<char>) -> Result<(), PathError> {
        Err(PathError::InvalidCharacter { position, character })
    }

    #[test]
    fn accepts_ordinary_paths() {
        check("a", Ok(()));
        check("prod/db/main", Ok(()));
        check("A-Z_a.z-0.9", Ok(()));
        check("...", Ok(()));
        check("a/.hidden/..x", Ok(()));
        check("Prod/DB", Ok(()));
    }

    #[test]
    fn rejects_adversarial_paths_with_the_right_variant() {
        check("..", Err(PathError::DotSegment { index: 0 }));
        check(".", Err(PathError::DotSegment { index: 0 }));
        check("a/../b", Err(PathError::DotSegment { index: 1 }));
        check("a/./b", Err(PathError::DotSegment { index: 1 }));
        check("a//b", Err(PathError::EmptySegment { index: 1 }));
        check("/a", Err(PathError::EmptySegment { index: 0 }));
        check("a/", Err(PathError::EmptySegment { index: 1 }));
        check("/", Err(PathError::EmptySegment { index: 0 }));
        check("", Err(PathError::Empty));
        check("a%2Fb", invalid(1, Some('%')));
        check("a\\b", invalid(1, Some('\\')));
        check("a b", invalid(1, Some(' ')));
        check("café", invalid(3, None));
        check("a/b\u{0}", invalid(3, None));
        check("a\tb", invalid(1, None));
        check("a/b\n", invalid(3, None));
        check("\r", invalid(0, None));
        check("~", invalid(0, Some('~')));
        check("a/~b", invalid(2, Some('~')));
        check("c:", invalid(1, Some(':')));
        check("a/b*", invalid(3, Some('*')));
        check("a/b?x=1", invalid(3, Some('?')));
        check("a/\u{2215}b", invalid(2, None)); // division slash look-alike
        check("a/\u{ff0e}\u{ff0e}", invalid(2, None)); // fullwidth dots
    }

    #[test]
    fn enforces_size_limits_exactly() {
        let seg = "a".repeat(MAX_SEGMENT_CHARS);
        let legal_512 = format!("{seg}/{seg}/{seg}/{}", "x".repeat(125));
        assert_eq!(legal_512.len(), MAX_PATH_BYTES);
        check(&legal_512, Ok(()));
        let over = format!("{legal_512}x");
        check(&over, Err(PathError::TooLong { len: 513 }));
        check(&"a".repeat(513), Err(PathError::TooLong { len: 513 }));

        let thirty_two = vec!["s"; MAX_SEGMENTS].join("/");
        check(&thirty_two, Ok(()));
        let thirty_three = vec!["s"; MAX_SEGMENTS + 1].join("/");
        check(&thirty_three, Err(PathError::TooManySegments { count: 33 }));

        check(&"z".repeat(128), Ok(()));
        check(&format!("a/{}", "z".repeat(128)), Ok(()));
        check(&format!("a/{}", "z".repeat(129)), Err(PathError::SegmentTooLong { index: 1, len: 129 }));
    }

    #[test]
    fn reserved_words_are_only_rejected_as_the_last_segment() {
        for word in RESERVED_SEGMENTS {
            check(word, Err(PathError::ReservedSegment(word)));
            check(&format!("a/{word}"), Err(PathError::ReservedSegment(word)));
            check(&format!("{word}/a"), Ok(()));
            check(&format!("a/{word}/b"), Ok(()));
            // Case-sensitive like the rest of the path rules.
            check(&format!("a/{}", word.to_uppercase()), Ok(()));
            check(&format!("a/{word}x"), Ok(()));
        }
    }

    #[test]
    fn error_messages_never_echo_the_input() {
        let secretish = "hunter2-hunter2%hunter2";
        let err = SecretPath::parse(secretish).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("'%'") && msg.contains("byte 15"), "{msg}");
        let msg = SecretPath::parse("a\u{1b}[31m").unwrap_err().to_string();
        assert!(!msg.contains('\u{1b}'), "{msg}");
    }

    #[test]
    fn comparison_is_byte_for_byte() {
        let a = SecretPath::parse("a/B").unwrap();
        let b = SecretPath::parse("a/b").unwrap();
        assert_ne!(a, b);
        assert!(a < b);
    }

    #[test]
    fn serde_uses_the_plain_string_and_validates_on_the_way_in() {
        let path = SecretPath::parse("prod/db").unwrap();
        assert_eq!(serde_json::to_string(&path).unwrap(), "\"prod/db\"");
        let back: SecretPath = serde_json::from_str("\"prod/db\"").unwrap();
        assert_eq!(back, path);
        let err = serde_json::from_str::<SecretPath>("\"prod/../db\"").unwrap_err();
        assert!(err.to_string().contains("'.' or '..'"), "{err}");
        assert!(serde_json::from_str::<SecretPath>("\"a/versions\"").is_err());
        assert!(serde_json::from_str::<SecretPath>("7").is_err());
        // JSON escapes are decoded before validation, so they cannot smuggle
        // a separator or a control character through.
        assert!(serde_json::from_str::<SecretPath>(r#""a\u002f""#).is_err());
        assert!(serde_json::from_str::<SecretPath>(r#""a\u0000""#).is_err());
    }

    #[test]
    fn from_str_matches_parse() {
        assert_eq!("a/b".parse::<SecretPath>(), SecretPath::parse("a/b"));
        assert_eq!("a//b".parse::<SecretPath>(), SecretPath::parse("a//b"));
    }
}
