//! The environment variables by which the clouds' SDKs find the identity a process runs as, read
//! once into a snapshot: the server's own when it builds a client, or a test's.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::Url;

use crate::FederationError;

/// The variables read to find the server's own identity.
const VARIABLES: [&str; 18] = [
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
    // GCP: the metadata server's address.
    "GCE_METADATA_HOST",
    // Kubernetes: where the pod's own service account token is mounted, if not where it usually is.
    "SCAIVAULT_KUBERNETES_TOKEN_FILE",
];

/// A snapshot of the variables above, and whether the operator lets the identity go to this
/// machine. Prints only the names that are set (some hold keys).
pub struct ServerEnvironment {
    variables: BTreeMap<&'static str, String>,
    loopback: bool,
}

impl std::fmt::Debug for ServerEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEnvironment")
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("loopback", &self.loopback)
            .finish()
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
        ServerEnvironment {
            variables: pairs
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .filter(|(name, value)| VARIABLES.contains(name) && !value.trim().is_empty())
                .collect(),
            loopback: false,
        }
    }

    /// Lets the identity be presented to a backend endpoint on this machine (a local proxy or
    /// emulator, or a test's stand-in), where any process listening would receive it: the
    /// operator's `--federation-identity-loopback`. Off, only the clouds' own services get it.
    pub fn lending_to_loopback(mut self, allowed: bool) -> ServerEnvironment {
        self.loopback = allowed;
        self
    }

    /// Whether [`ServerEnvironment::lending_to_loopback`] allowed this machine.
    pub fn loopback(&self) -> bool {
        self.loopback
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.variables.get(name).map(String::as_str)
    }

    /// The base URL of a metadata service that the variable `name` may move (a host, `host:port`
    /// or URL, as the clouds' SDKs read it), else `default`.
    pub(crate) fn metadata_base(&self, name: &str, default: &str) -> Result<Url, FederationError> {
        let raw = match self.get(name) {
            Some(v) if v.contains("://") => v.to_owned(),
            Some(v) => format!("http://{v}"),
            None => default.to_owned(),
        };
        let mut url = Url::parse(&raw).map_err(|e| FederationError::Config(format!("{name}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(FederationError::Config(format!("{name} must name an http(s) host")));
        }
        url.set_path("/");
        url.set_query(None);
        Ok(url)
    }
}

/// A token a platform writes into a file and rotates (a projected service account token, a
/// container authorization token), read afresh at each use and trimmed; `what` names it in the
/// error, which never quotes the file.
pub(crate) async fn read_token_file(path: &Path, what: &str) -> Result<String, FederationError> {
    let token = tokio::fs::read_to_string(path).await.map_err(|e| {
        FederationError::Config(format!("{what} ({}) cannot be read: {}", path.display(), e.kind()))
    })?;
    Ok(token.trim().to_owned())
}
