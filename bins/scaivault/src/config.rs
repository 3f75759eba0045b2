//! Where the server is and which token to send: flag > environment > profile > default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::Global;

pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:7200";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
}

/// The server and token to use.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    /// The PEM bundle of `--ca-cert`, read.
    pub(crate) ca_pem: Option<Vec<u8>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `$SCAIVAULT_CONFIG_DIR/profiles.toml`, else `$XDG_CONFIG_HOME/scaivault/profiles.toml`, else
/// `~/.config/scaivault/profiles.toml`.
fn profiles_path() -> Option<PathBuf> {
    if let Some(dir) = env("SCAIVAULT_CONFIG_DIR") {
        return Some(PathBuf::from(dir).join("profiles.toml"));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("scaivault").join("profiles.toml"))
}

fn profile(name: &str) -> anyhow::Result<Profile> {
    let path = profiles_path().context("no profiles file location (set SCAIVAULT_CONFIG_DIR or HOME)")?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("profile {name}: {}", path.display()))?;
    let file: ProfilesFile = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    file.profiles.get(name).cloned().with_context(|| format!("no profile {name:?} in {}", path.display()))
}

/// Reads a token file, refusing one that others may read.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("token file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("token file {} is readable by others; chmod 600 it", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("token file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

pub(crate) fn target(g: &Global) -> anyhow::Result<Target> {
    let profile = match g.profile.clone().or_else(|| env("SCAIVAULT_PROFILE")) {
        Some(name) => profile(&name)?,
        None => Profile::default(),
    };
    let url = g
        .url
        .clone()
        .or_else(|| env("SCAIVAULT_URL"))
        .or_else(|| env("SCAIVAULT_ADDR"))
        .or(profile.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = match (g.token.clone().or_else(|| env("SCAIVAULT_TOKEN")), &g.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(file)) => Some(read_token_file(file)?),
        (None, None) => match env("SCAIVAULT_TOKEN_FILE").map(PathBuf::from).or(profile.token_file) {
            Some(file) => Some(read_token_file(&file)?),
            None => None,
        },
    };
    let ca_pem =
        match g.ca_cert.clone().or_else(|| env("SCAIVAULT_CA_CERT").map(PathBuf::from)).or(profile.ca_cert) {
            Some(file) => Some(
                std::fs::read(&file)
                    .with_context(|| format!("reading CA certificates {}", file.display()))?,
            ),
            None => None,
        };
    Ok(Target { url, token, ca_pem })
}
