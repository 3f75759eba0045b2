//! The environment variables by which the clouds' SDKs find the identity a process runs as, read
//! once into a snapshot: the server's own when it builds a client, or a test's.

use std::collections::BTreeMap;

/// The variables read to find the server's own identity.
const VARIABLES: [&str; 16] = [
    // AWS: keys, EKS's web identity, ECS's and EKS Pod Identity's container credentials, EC2's
    // instance metadata.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    // Azure: AKS workload identity (a federated token file, for the backend's own `tenant_id`), a
    // user-assigned managed identity, and the instance metadata service's address.
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
];

/// A snapshot of the variables above. Prints only the names that are set (some hold keys).
pub struct ServerEnvironment(BTreeMap<&'static str, String>);

impl std::fmt::Debug for ServerEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServerEnvironment").field(&self.0.keys().collect::<Vec<_>>()).finish()
    }
}

impl ServerEnvironment {
    /// This process's.
    pub fn of_process() -> ServerEnvironment {
        ServerEnvironment::from_pairs(
            VARIABLES.iter().filter_map(|name| Some((*name, std::env::var(name).ok()?))),
        )
    }

    /// The given ones (others than those above are dropped; empty values count as unset).
    pub fn from_pairs<I, V>(pairs: I) -> ServerEnvironment
    where
        I: IntoIterator<Item = (&'static str, V)>,
        V: Into<String>,
    {
        ServerEnvironment(
            pairs
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .filter(|(name, value)| VARIABLES.contains(name) && !value.trim().is_empty())
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}
