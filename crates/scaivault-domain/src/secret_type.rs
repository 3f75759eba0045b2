use serde_json::Value;

use crate::text::truncate_for_message;

string_enum! {
    /// How a secret's `data` is meant to be read. It decides validation only;
    /// every type is stored the same way.
    #[derive(Default)]
    pub enum SecretType {
        #[default]
        Json => "json",
        Kv => "kv",
        ApiKey => "api_key",
        Password => "password",
        Certificate => "certificate",
        SshKey => "ssh_key",
        Text => "text",
    }
    /// A string that is not a secret type.
    pub enum SecretTypeError => "secret type";
}

impl SecretType {
    /// Whether every value of the `data` object must be a JSON string.
    pub fn requires_string_values(&self) -> bool {
        matches!(self, SecretType::Kv | SecretType::ApiKey | SecretType::Password)
    }
}

/// Checks that `data` has the shape `secret_type` promises: always a JSON
/// object, and for string-valued types nothing but strings inside it.
pub fn validate_secret_data(secret_type: SecretType, data: &Value) -> Result<(), DataError> {
    let Value::Object(map) = data else {
        return Err(DataError::NotAnObject { found: json_kind(data) });
    };
    if secret_type.requires_string_values()
        && let Some((key, value)) = map.iter().find(|(_, v)| !v.is_string())
    {
        return Err(DataError::NonStringValue {
            secret_type,
            key: truncate_for_message(key),
            found: json_kind(value),
        });
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Why secret data does not fit its type. Messages name the offending key and
/// the JSON kind found, and never any value: values are the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("secret data must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },
    #[error("secret data of type {secret_type} must have string values, but key {key:?} holds a {found}")]
    NonStringValue {
        secret_type: SecretType,
        /// Shortened if it was long.
        key: String,
        found: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(secret_type: SecretType, data: Value, expected: Result<(), DataError>) {
        assert_eq!(validate_secret_data(secret_type, &data), expected, "{secret_type} {data}");
    }

    fn non_string(secret_type: SecretType, key: &str, found: &'static str) -> Result<(), DataError> {
        Err(DataError::NonStringValue { secret_type, key: key.to_owned(), found })
    }

    #[test]
    fn data_shapes() {
        use SecretType::*;
        check(Json, json!({"a": 1, "b": {"c": [true]}}), Ok(()));
        check(Json, json!({}), Ok(()));
        check(Json, json!([1]), Err(DataError::NotAnObject { found: "array" }));
        check(Text, json!("plain"), Err(DataError::NotAnObject { found: "string" }));
        check(Text, json!(null), Err(DataError::NotAnObject { found: "null" }));
        check(Text, json!({"value": "x", "n": 3}), Ok(()));
        check(Certificate, json!({"pem": "-----BEGIN"}), Ok(()));
        check(SshKey, json!({"private_key": "k", "bits": 4096}), Ok(()));
        for t in [Kv, ApiKey, Password] {
            check(t, json!({"user": "u", "pass": "p"}), Ok(()));
            check(t, json!({}), Ok(()));
            check(t, json!({"user": "u", "port": 5432}), non_string(t, "port", "number"));
            check(t, json!({"x": null}), non_string(t, "x", "null"));
            check(t, json!({"x": ["a"]}), non_string(t, "x", "array"));
            check(t, json!({"x": {"y": "z"}}), non_string(t, "x", "object"));
            check(t, json!({"x": false}), non_string(t, "x", "boolean"));
        }
    }

    #[test]
    fn errors_name_the_key_but_never_the_value() {
        let data = json!({"password": ["hunter2"], "user": "admin"});
        let msg = validate_secret_data(SecretType::Password, &data).unwrap_err().to_string();
        assert!(msg.contains("\"password\""), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let data = json!({"token": 123_456_789});
        let msg = validate_secret_data(SecretType::ApiKey, &data).unwrap_err().to_string();
        assert!(!msg.contains("123456789"), "{msg}");
    }

    #[test]
    fn type_spellings_default_and_string_rule() {
        let table = [
            ("json", SecretType::Json, false),
            ("kv", SecretType::Kv, true),
            ("api_key", SecretType::ApiKey, true),
            ("password", SecretType::Password, true),
            ("certificate", SecretType::Certificate, false),
            ("ssh_key", SecretType::SshKey, false),
            ("text", SecretType::Text, false),
        ];
        assert_eq!(table.len(), SecretType::ALL.len());
        for (text, t, strings) in table {
            assert_eq!(text.parse::<SecretType>(), Ok(t));
            assert_eq!(t.as_str(), text);
            assert_eq!(serde_json::to_value(t).unwrap(), text);
            assert_eq!(serde_json::from_value::<SecretType>(text.into()).unwrap(), t);
            assert_eq!(t.requires_string_values(), strings, "{text}");
        }
        assert_eq!(SecretType::default(), SecretType::Json);
        assert!("apiKey".parse::<SecretType>().is_err());
        assert!("ApiKey".parse::<SecretType>().is_err());
    }
}
