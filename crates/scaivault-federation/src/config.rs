//! The configuration vocabulary of a federation backend, as the contract spells it.

use serde::{Deserialize, Serialize};

/// Which store a backend is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendType {
    /// HashiCorp Vault or OpenBao, KV version 2.
    HashicorpVault,
    AwsSecretsManager,
    AzureKeyVault,
    GcpSecretManager,
}

impl BackendType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::HashicorpVault => "hashicorp_vault",
            BackendType::AwsSecretsManager => "aws_secrets_manager",
            BackendType::AzureKeyVault => "azure_key_vault",
            BackendType::GcpSecretManager => "gcp_secret_manager",
        }
    }

    /// Whether the store's names may contain `/` (Azure and GCP secret names may not).
    pub fn allows_slash(self) -> bool {
        matches!(self, BackendType::HashicorpVault | BackendType::AwsSecretsManager)
    }

    /// Whether the store can hold a secret named `name`: Azure Key Vault names are 1-127 of
    /// `0-9 A-Z a-z -` but compared without case, so only their lowercase form is a name here (else
    /// `PROD-db` and `prod-db`, under different policies, would read one secret); GCP secret ids
    /// are 1-255 of `A-Z a-z 0-9 - _`; Vault and AWS take any non-empty name a target template can
    /// make.
    pub fn holds_name(self, name: &str) -> bool {
        let ok = |max: usize, extra: &[u8]| {
            !name.is_empty()
                && name.len() <= max
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        };
        match self {
            BackendType::AzureKeyVault => ok(127, b"-") && !name.bytes().any(|b| b.is_ascii_uppercase()),
            BackendType::GcpSecretManager => ok(255, b"-_"),
            BackendType::HashicorpVault | BackendType::AwsSecretsManager => !name.is_empty(),
        }
    }
}

/// How a backend serves its mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every read is forwarded live; writes are refused; nothing is stored.
    #[default]
    Proxy,
    /// The mapped part of the store is pulled into ScaiVault's storage on a schedule.
    Sync,
}

/// Which side wins when a synced path changed on both sides since the last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictResolution {
    #[default]
    BackendWins,
    LocalWins,
    Manual,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_contracts() {
        for (t, name) in [
            (BackendType::HashicorpVault, "hashicorp_vault"),
            (BackendType::AwsSecretsManager, "aws_secrets_manager"),
            (BackendType::AzureKeyVault, "azure_key_vault"),
            (BackendType::GcpSecretManager, "gcp_secret_manager"),
        ] {
            assert_eq!(t.as_str(), name);
            assert_eq!(serde_json::to_value(t).unwrap(), name);
            assert_eq!(serde_json::from_value::<BackendType>(name.into()).unwrap(), t);
        }
        assert_eq!(serde_json::to_value(Mode::Proxy).unwrap(), "proxy");
        assert_eq!(serde_json::to_value(ConflictResolution::BackendWins).unwrap(), "backend_wins");
        assert!(serde_json::from_value::<Mode>("mirror".into()).is_err());
    }
}
