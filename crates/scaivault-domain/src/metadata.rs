use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Descriptive metadata of a secret. Never secret itself: it is stored in clear, listed and logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
}

/// Longest free-text description (of a secret, a policy or a rotation policy), in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most tags on one secret.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 128;
/// Longest owner, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;
/// Most `custom` entries on one secret.
pub const MAX_CUSTOM_ENTRIES: usize = 64;
/// Longest `custom` key, in bytes.
pub const MAX_CUSTOM_KEY_BYTES: usize = 128;
/// Longest `custom` value, in bytes.
pub const MAX_CUSTOM_VALUE_BYTES: usize = 1024;

/// Why metadata was refused. Messages name the field and the limit, never the
/// offending text: metadata is stored in clear, but a value pasted by mistake
/// into it must not be echoed into logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("{field} is longer than {limit} bytes")]
    TooLong { field: &'static str, limit: usize },
    #[error("{field} may not be empty")]
    Empty { field: &'static str },
    #[error("{field} may not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("{field} has more than {limit} entries")]
    TooMany { field: &'static str, limit: usize },
}

/// Checks a free-text description: at most [`MAX_DESCRIPTION_BYTES`], no control
/// characters other than newline and tab.
pub fn check_description(description: &str) -> Result<(), MetadataError> {
    check_text("description", description, MAX_DESCRIPTION_BYTES, true)
}

fn check_text(field: &'static str, s: &str, limit: usize, multiline: bool) -> Result<(), MetadataError> {
    if s.len() > limit {
        return Err(MetadataError::TooLong { field, limit });
    }
    if s.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) {
        return Err(MetadataError::ControlCharacter { field });
    }
    Ok(())
}

impl SecretMetadata {
    /// Checks every field against the limits above. Metadata read from a
    /// federated backend is not checked: it is the backend's.
    pub fn check(&self) -> Result<(), MetadataError> {
        if let Some(d) = &self.description {
            check_description(d)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(MetadataError::TooMany { field: "tags", limit: MAX_TAGS });
        }
        for tag in &self.tags {
            if tag.is_empty() {
                return Err(MetadataError::Empty { field: "a tag" });
            }
            check_text("a tag", tag, MAX_TAG_BYTES, false)?;
        }
        if let Some(owner) = &self.owner {
            check_text("owner", owner, MAX_OWNER_BYTES, false)?;
        }
        if self.custom.len() > MAX_CUSTOM_ENTRIES {
            return Err(MetadataError::TooMany { field: "custom", limit: MAX_CUSTOM_ENTRIES });
        }
        for (key, value) in &self.custom {
            if key.is_empty() {
                return Err(MetadataError::Empty { field: "a custom key" });
            }
            check_text("a custom key", key, MAX_CUSTOM_KEY_BYTES, false)?;
            check_text("a custom value", value, MAX_CUSTOM_VALUE_BYTES, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut SecretMetadata)) -> SecretMetadata {
        let mut m = SecretMetadata::default();
        f(&mut m);
        m
    }

    #[test]
    fn metadata_at_every_limit_is_accepted() {
        let m = with(|m| {
            m.description = Some(format!("{}d", "d\n\t".repeat(MAX_DESCRIPTION_BYTES / 3)));
            assert_eq!(m.description.as_ref().map(String::len), Some(MAX_DESCRIPTION_BYTES));
            m.tags = (0..MAX_TAGS).map(|i| format!("{i:0>width$}", width = MAX_TAG_BYTES)).collect();
            m.owner = Some("o".repeat(MAX_OWNER_BYTES));
            m.custom = (0..MAX_CUSTOM_ENTRIES)
                .map(|i| {
                    (
                        format!("{i:0>width$}", width = MAX_CUSTOM_KEY_BYTES),
                        "v".repeat(MAX_CUSTOM_VALUE_BYTES),
                    )
                })
                .collect();
        });
        assert_eq!(m.check(), Ok(()));
        assert_eq!(SecretMetadata::default().check(), Ok(()));
    }

    #[test]
    fn each_limit_is_enforced_and_the_error_names_the_field_not_the_text() {
        let cases = [
            (with(|m| m.description = Some("x".repeat(MAX_DESCRIPTION_BYTES + 1))), "description"),
            (with(|m| m.description = Some("a\u{1b}[31m".into())), "description"),
            (with(|m| m.tags = vec!["t".into(); MAX_TAGS + 1]), "tags"),
            (with(|m| m.tags = vec![String::new()]), "a tag"),
            (with(|m| m.tags = vec!["t".repeat(MAX_TAG_BYTES + 1)]), "a tag"),
            (with(|m| m.tags = vec!["a\nb".into()]), "a tag"),
            (with(|m| m.owner = Some("o".repeat(MAX_OWNER_BYTES + 1))), "owner"),
            (with(|m| m.owner = Some("team\r".into())), "owner"),
            (
                with(|m| {
                    m.custom = (0..=MAX_CUSTOM_ENTRIES).map(|i| (i.to_string(), String::new())).collect()
                }),
                "custom",
            ),
            (with(|m| m.custom = [(String::new(), "v".into())].into()), "a custom key"),
            (
                with(|m| m.custom = [("k".repeat(MAX_CUSTOM_KEY_BYTES + 1), "v".into())].into()),
                "a custom key",
            ),
            (with(|m| m.custom = [("k\u{0}".into(), "v".into())].into()), "a custom key"),
            (
                with(|m| m.custom = [("k".into(), "v".repeat(MAX_CUSTOM_VALUE_BYTES + 1))].into()),
                "a custom value",
            ),
            (with(|m| m.custom = [("k".into(), "v\u{7f}".into())].into()), "a custom value"),
        ];
        for (metadata, field) in cases {
            let err = metadata.check().expect_err(field).to_string();
            assert!(err.starts_with(field), "{err:?} should name {field}");
            assert!(!err.contains("xxxx") && !err.contains("\u{1b}") && !err.contains("team"), "{err:?}");
        }
    }
}
