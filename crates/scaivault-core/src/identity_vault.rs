//! The Vaults an operator lets federation log in to as the server's own identity
//! (`--federation-identity-vault`), and what such a login may use there.
//!
//! A Vault that receives the server's pod token, signed AWS request or GCP identity token can
//! replay it, and whoever may configure auth methods in a Vault namespace decides where Vault sends
//! it on (a Kubernetes auth method's `kubernetes_host` receives the token for review). So the
//! operator names the Vault's origin together with the namespace and auth mount the login may use;
//! a tenant's backend must match all three.

use scaivault_federation::VaultBackend;

/// One `--federation-identity-vault` entry: `https://vault.internal:8200`, optionally with
/// `?namespace=team-a&mount=k8s-prod` (default: no namespace, the method's own mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityVault {
    origin: String,
    namespace: Option<String>,
    mount: Option<String>,
}

/// Namespaces and mounts: `/`-separated segments of `A-Z a-z 0-9 - _ .`, without the outer `/`.
fn segments(what: &str, raw: &str) -> Result<String, String> {
    let value = raw.trim_matches('/');
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok { Ok(value.to_owned()) } else { Err(format!("{what} '{raw}' is not a path of A-Z a-z 0-9 - _ .")) }
}

/// A configured namespace, `None` for the root one.
fn namespace_of(namespace: Option<&str>) -> Option<&str> {
    namespace.map(|n| n.trim_matches('/')).filter(|n| !n.is_empty())
}

impl IdentityVault {
    pub fn parse(raw: &str) -> Result<IdentityVault, String> {
        let (base, query) = raw.split_once('?').unwrap_or((raw, ""));
        let url = VaultBackend::check_address(base).map_err(|e| e.to_string())?;
        if url.path() != "/" || url.fragment().is_some() {
            return Err("a Vault is named by its origin (scheme, host, port): no path".into());
        }
        let mut entry =
            IdentityVault { origin: url.origin().ascii_serialization(), namespace: None, mount: None };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("namespace", v)) => entry.namespace = Some(segments("namespace", v)?),
                Some(("mount", v)) => entry.mount = Some(segments("mount", v)?),
                _ => return Err(format!("'{pair}': only namespace=… and mount=… may follow the URL")),
            }
        }
        Ok(entry)
    }

    /// Whether a login with `method` at `mount` (the credential's, if it names one) in
    /// `namespace` at `address` is what this entry allows.
    pub(crate) fn allows(
        &self,
        address: &str,
        namespace: Option<&str>,
        method: &str,
        mount: Option<&str>,
    ) -> bool {
        // The address must be the origin itself: a path before `/v1/` would reach another
        // namespace (Vault reads one from the path) or another server behind a gateway.
        let origin = VaultBackend::check_address(address)
            .ok()
            .filter(|url| url.path() == "/" && url.fragment().is_none())
            .map(|url| url.origin().ascii_serialization());
        let mount = mount.map(|m| m.trim_matches('/')).filter(|m| !m.is_empty()).unwrap_or(method);
        origin.is_some_and(|o| o == self.origin)
            && namespace_of(namespace) == self.namespace.as_deref()
            && mount == self.mount.as_deref().unwrap_or(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_an_origin_with_a_namespace_and_mount() {
        let plain = IdentityVault::parse("https://Vault.internal:8200/").unwrap();
        assert!(plain.allows("https://vault.internal:8200", None, "kubernetes", None));
        assert!(plain.allows("https://vault.internal:8200/", Some(""), "kubernetes", Some("/kubernetes/")));
        assert!(
            !plain.allows("https://vault.internal:8200", Some("team-a"), "kubernetes", None),
            "a namespace"
        );
        assert!(
            !plain.allows("https://vault.internal:8200", None, "kubernetes", Some("k8s-other")),
            "a mount"
        );
        assert!(!plain.allows("http://vault.internal:8200", None, "kubernetes", None), "another scheme");
        assert!(!plain.allows("https://vault.internal:8201", None, "kubernetes", None), "another port");
        assert!(!plain.allows("https://vault.internal.evil:8200", None, "kubernetes", None));
        for pathed in [
            "https://vault.internal:8200/v1/team-b",
            "https://vault.internal:8200/x/",
            "https://vault.internal:8200/#f",
        ] {
            assert!(!plain.allows(pathed, None, "kubernetes", None), "{pathed}: a path is another namespace");
        }
        let pinned =
            IdentityVault::parse("https://vault.internal?namespace=team-a/sub&mount=k8s-prod").unwrap();
        assert!(pinned.allows(
            "https://vault.internal:443",
            Some("/team-a/sub/"),
            "kubernetes",
            Some("k8s-prod")
        ));
        assert!(!pinned.allows("https://vault.internal", None, "kubernetes", Some("k8s-prod")));
        assert!(!pinned.allows("https://vault.internal", Some("team-a/sub"), "kubernetes", None));
        for bad in [
            "vault.internal",
            "https://u:p@vault.internal",
            "https://gw.corp/vault-a",
            "https://vault.internal?role=x",
            "https://vault.internal?mount=../sys",
            "https://vault.internal#x",
            "ftp://vault.internal",
        ] {
            assert!(IdentityVault::parse(bad).is_err(), "{bad}");
        }
    }
}
