use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret version number. Versions start at 1 and only grow; 0 is never a
/// version, so it cannot be mistaken for "latest" or "unset".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(u64);

impl Version {
    pub const FIRST: Version = Version(1);

    /// `None` for 0.
    pub fn new(n: u64) -> Option<Version> {
        (n >= 1).then_some(Version(n))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    ///
    /// # Panics
    ///
    /// At `u64::MAX`, rather than wrapping onto an existing version or
    /// saturating into a duplicate. Use [`Version::checked_next`] where the
    /// number comes from outside.
    pub fn next(self) -> Version {
        self.checked_next().expect("secret version number overflowed u64")
    }

    /// The version after this one, or `None` at `u64::MAX`.
    pub fn checked_next(self) -> Option<Version> {
        self.0.checked_add(1).map(Version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    /// Strict decimal, as in `?version=3`: no sign, no spaces, no leading
    /// zeros, so each version has exactly one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VersionError::NotANumber);
        }
        if s.starts_with('0') {
            return Err(if s.bytes().all(|b| b == b'0') {
                VersionError::Zero
            } else {
                VersionError::LeadingZero
            });
        }
        s.parse::<u64>().map(Version).map_err(|_| VersionError::Overflow)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        Version::new(n).ok_or_else(|| serde::de::Error::custom(VersionError::Zero))
    }
}

/// Why a string is not a version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty")]
    Empty,
    #[error("version must contain only the digits 0-9")]
    NotANumber,
    #[error("version must be at least 1")]
    Zero,
    #[error("version must not have leading zeros")]
    LeadingZero,
    #[error("version is too large")]
    Overflow,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, VersionError>) {
        let got = input.parse::<Version>().map(Version::get);
        assert_eq!(got, expected, "{input:?}");
        if let Ok(n) = expected {
            assert_eq!(Version::new(n).unwrap().to_string(), input);
        }
    }

    #[test]
    fn parsing_query_values() {
        check("1", Ok(1));
        check("42", Ok(42));
        check("18446744073709551615", Ok(u64::MAX));
        check("18446744073709551616", Err(VersionError::Overflow));
        check("99999999999999999999999", Err(VersionError::Overflow));
        check("0", Err(VersionError::Zero));
        check("000", Err(VersionError::Zero));
        check("01", Err(VersionError::LeadingZero));
        check("", Err(VersionError::Empty));
        check("+1", Err(VersionError::NotANumber));
        check("-1", Err(VersionError::NotANumber));
        check(" 1", Err(VersionError::NotANumber));
        check("1 ", Err(VersionError::NotANumber));
        check("1.0", Err(VersionError::NotANumber));
        check("0x10", Err(VersionError::NotANumber));
        check("latest", Err(VersionError::NotANumber));
        check("١", Err(VersionError::NotANumber)); // Arabic-Indic digit one
    }

    #[test]
    fn construction_and_succession() {
        assert_eq!(Version::new(0), None);
        assert_eq!(Version::new(1), Some(Version::FIRST));
        assert_eq!(Version::FIRST.get(), 1);
        assert_eq!(Version::FIRST.next().get(), 2);
        assert!(Version::FIRST < Version::FIRST.next());
        let max = Version::new(u64::MAX).unwrap();
        assert_eq!(max.checked_next(), None);
        assert_eq!(Version::FIRST.checked_next(), Version::new(2));
    }

    #[test]
    #[should_panic(expected = "overflowed")]
    fn next_refuses_to_wrap() {
        let _ = Version::new(u64::MAX).unwrap().next();
    }

    #[test]
    fn serde_is_a_plain_number() {
        let v = Version::new(7).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Version>("7").unwrap(), v);
        assert!(serde_json::from_str::<Version>("0").is_err());
        assert!(serde_json::from_str::<Version>("-1").is_err());
        assert!(serde_json::from_str::<Version>("\"7\"").is_err());
        assert!(serde_json::from_str::<Version>("1.5").is_err());
    }
}
