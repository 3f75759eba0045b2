use scaivault_crypto::{CryptoError, random_from_alphabet};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The characters a generated value is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    /// `A-Z a-z 0-9`
    #[default]
    Alphanumeric,
    /// Printable ASCII without space (`!` to `~`).
    Ascii,
    /// `0-9 a-f`
    Hex,
    /// `A-Z a-z 0-9 - _`
    Base64url,
}

impl Charset {
    fn alphabet(self) -> Vec<u8> {
        match self {
            Charset::Alphanumeric => (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').collect(),
            Charset::Ascii => (b'!'..=b'~').collect(),
            Charset::Hex => (b'0'..=b'9').chain(b'a'..=b'f').collect(),
            Charset::Base64url => {
                (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').chain([b'-', b'_']).collect()
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GeneratorError {
    #[error("generator.fields must name 1 to 32 fields")]
    Fields,
    #[error("generator.length must be between {min} and {max}", min = Generator::MIN_LENGTH, max = Generator::MAX_LENGTH)]
    Length,
    #[error("the random source failed")]
    Random,
}

impl From<CryptoError> for GeneratorError {
    fn from(_: CryptoError) -> Self {
        GeneratorError::Random
    }
}

fn default_fields() -> Vec<String> {
    vec!["password".to_owned()]
}

fn default_length() -> u32 {
    32
}

/// How `auto_generate` makes a new version: the named fields get fresh values from the CSPRNG
/// (uniform over the charset, by rejection sampling), every other field is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    #[serde(default = "default_length")]
    pub length: u32,
    #[serde(default)]
    pub charset: Charset,
}

impl Default for Generator {
    fn default() -> Self {
        Generator { fields: default_fields(), length: default_length(), charset: Charset::default() }
    }
}

impl Generator {
    pub const MIN_LENGTH: u32 = 8;
    pub const MAX_LENGTH: u32 = 1024;

    pub fn validate(&self) -> Result<(), GeneratorError> {
        if self.fields.is_empty() || self.fields.len() > 32 || self.fields.iter().any(|f| f.is_empty()) {
            return Err(GeneratorError::Fields);
        }
        if !(Self::MIN_LENGTH..=Self::MAX_LENGTH).contains(&self.length) {
            return Err(GeneratorError::Length);
        }
        Ok(())
    }

    /// The next version's data: `current` with each named field replaced by a fresh value.
    pub fn apply(&self, current: &Map<String, Value>) -> Result<Map<String, Value>, GeneratorError> {
        self.validate()?;
        let alphabet = self.charset.alphabet();
        let mut next = current.clone();
        for field in &self.fields {
            let len = usize::try_from(self.length).map_err(|_| GeneratorError::Length)?;
            next.insert(field.clone(), Value::String(random_from_alphabet(&alphabet, len)?));
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn named_fields_change_and_the_rest_stay() {
        let current = json!({"host": "db.internal", "port": 5432, "username": "app", "password": "old"});
        let g = Generator { fields: vec!["password".into()], length: 40, charset: Charset::Alphanumeric };
        let next = g.apply(current.as_object().expect("object")).expect("apply");
        assert_eq!(next["host"], "db.internal");
        assert_eq!(next["port"], 5432);
        assert_eq!(next["username"], "app");
        let pw = next["password"].as_str().expect("string");
        assert_eq!(pw.len(), 40);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(pw, "old");
    }

    #[test]
    fn bad_generators_are_refused() {
        let g = Generator { length: 4, ..Generator::default() };
        assert_eq!(g.validate(), Err(GeneratorError::Length));
        let g = Generator { fields: vec![], ..Generator::default() };
        assert_eq!(g.validate(), Err(GeneratorError::Fields));
        let parsed: Generator = serde_json::from_value(json!({"charset": "hex"})).expect("defaults");
        assert_eq!((parsed.fields, parsed.length), (vec!["password".to_owned()], 32));
        assert!(serde_json::from_value::<Generator>(json!({"charset": "emoji"})).is_err());
    }

    proptest! {
        #[test]
        fn values_stay_in_their_charset(len in 8u32..200, which in 0usize..4) {
            let charset = [Charset::Alphanumeric, Charset::Ascii, Charset::Hex, Charset::Base64url][which];
            let g = Generator { fields: vec!["k".into()], length: len, charset };
            let next = g.apply(&Map::new()).expect("apply");
            let v = next["k"].as_str().expect("string");
            prop_assert_eq!(v.len(), len as usize);
            let alphabet = charset.alphabet();
            prop_assert!(v.bytes().all(|b| alphabet.contains(&b)));
        }
    }
}
