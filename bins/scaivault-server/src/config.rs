//! Flags, their environment twins and the optional TOML file, in the order flag > environment >
//! file > default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use scaivault_core::{IdentityVault, JwtIssuer, RateLimit, RateLimits};
use scaivault_domain::{DurationList, DurationSpec};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(name = "scaivault-server", version, about = "ScaiVault secrets manager server")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) options: Options,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server (the default).
    Serve,
    /// Make a new master key version and re-wrap every data key, against a stopped server's storage.
    /// Safe to run again after an interruption.
    RotateMasterKey,
}

#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Options {
    /// TOML file with any of these settings (keys as the flag names).
    #[arg(long, env = "SCAIVAULT_CONFIG", global = true)]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7200]
    #[arg(long, env = "SCAIVAULT_LISTEN", global = true)]
    pub(crate) listen: Option<String>,
    /// Directory for the SQLite file and the master key file [default: ./scaivault-data]
    #[arg(long, env = "SCAIVAULT_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// sqlite://FILE or postgres://… (its value, which may hold a password, is never shown here) [default: sqlite://<data-dir>/scaivault.db]
    #[arg(long, env = "SCAIVAULT_DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Write the root token here (mode 0600) instead of printing it
    #[arg(long, env = "SCAIVAULT_ROOT_TOKEN_FILE", global = true)]
    pub(crate) root_token_file: Option<PathBuf>,
    /// Root key file [default: <data-dir>/master.key]; SCAIVAULT_MASTER_KEY wins over it
    #[arg(long, env = "SCAIVAULT_MASTER_KEY_FILE", global = true)]
    pub(crate) master_key_file: Option<PathBuf>,
    /// ISS=JWKS_URL[,aud=AUD], repeatable
    #[arg(long = "jwt-issuer", env = "SCAIVAULT_JWT_ISSUERS", value_delimiter = ';', global = true)]
    #[serde(default, rename = "jwt-issuer")]
    pub(crate) jwt_issuers: Vec<String>,
    /// Allow webhook URLs on loopback and private networks
    #[arg(
        long,
        env = "SCAIVAULT_WEBHOOK_ALLOW_PRIVATE",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) webhook_allow_private: Option<bool>,
    /// Let federation backends sign in as this server's own identity (AWS role_arn without keys,
    /// Azure managed_identity, GCP workload_identity; Vault logins, at the Vaults named below)
    #[arg(
        long,
        env = "SCAIVAULT_FEDERATION_AMBIENT_IDENTITY",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) federation_ambient_identity: Option<bool>,
    /// Let that identity also go to federation endpoints on this machine (a local proxy or
    /// emulator); any process listening here would receive it
    #[arg(
        long,
        env = "SCAIVAULT_FEDERATION_IDENTITY_LOOPBACK",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) federation_identity_loopback: Option<bool>,
    /// A Vault (URL) that federation logins as this server's own identity may go to, repeatable
    #[arg(
        long = "federation-identity-vault",
        env = "SCAIVAULT_FEDERATION_IDENTITY_VAULTS",
        value_delimiter = ',',
        global = true
    )]
    #[serde(default, rename = "federation-identity-vault")]
    pub(crate) federation_identity_vaults: Vec<String>,
    /// Webhook retry delays [default: 30s,5m,30m,2h,8h,24h]
    #[arg(long, env = "SCAIVAULT_WEBHOOK_RETRY_SCHEDULE", global = true)]
    pub(crate) webhook_retry_schedule: Option<String>,
    /// Background scheduler period [default: 10s]
    #[arg(long, env = "SCAIVAULT_SCHEDULER_TICK", global = true)]
    pub(crate) scheduler_tick: Option<String>,
    /// How long a stop waits for requests in flight before closing their connections [default: 25s]
    #[arg(long, env = "SCAIVAULT_SHUTDOWN_TIMEOUT", global = true)]
    pub(crate) shutdown_timeout: Option<String>,
    /// TLS certificate chain (PEM)
    #[arg(long, env = "SCAIVAULT_TLS_CERT", global = true)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, env = "SCAIVAULT_TLS_KEY", global = true)]
    pub(crate) tls_key: Option<PathBuf>,
    /// Requests per token, e.g. 100/s (burst: two seconds' worth) [default: unlimited]
    #[arg(long, env = "SCAIVAULT_RATE_LIMIT_TOKEN", global = true)]
    pub(crate) rate_limit_token: Option<String>,
    /// Requests per tenant, e.g. 1000/s [default: unlimited]
    #[arg(long, env = "SCAIVAULT_RATE_LIMIT_TENANT", global = true)]
    pub(crate) rate_limit_tenant: Option<String>,
    /// text or json [default: text]
    #[arg(long, env = "SCAIVAULT_LOG_FORMAT", global = true)]
    pub(crate) log_format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// The settings after merging and checking.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) database_url: String,
    pub(crate) root_token_file: Option<PathBuf>,
    pub(crate) master_key_file: PathBuf,
    pub(crate) jwt_issuers: Vec<JwtIssuer>,
    pub(crate) webhook_allow_private: bool,
    pub(crate) federation_ambient_identity: bool,
    pub(crate) federation_identity_loopback: bool,
    pub(crate) federation_identity_vaults: Vec<IdentityVault>,
    pub(crate) webhook_retry_schedule: DurationList,
    pub(crate) scheduler_tick: DurationSpec,
    pub(crate) shutdown_timeout: DurationSpec,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    pub(crate) rate_limits: RateLimits,
    pub(crate) log_format: LogFormat,
}

fn parse_issuer(text: &str) -> anyhow::Result<JwtIssuer> {
    let (issuer, rest) = text.split_once('=').context("expected ISS=JWKS_URL[,aud=AUD]")?;
    let (jwks_url, audience) = match rest.split_once(",aud=") {
        Some((url, aud)) => (url, Some(aud.to_owned())),
        None => (rest, None),
    };
    if issuer.is_empty() || !(jwks_url.starts_with("http://") || jwks_url.starts_with("https://")) {
        bail!("expected ISS=JWKS_URL[,aud=AUD] with an http(s) JWKS URL");
    }
    Ok(JwtIssuer { issuer: issuer.to_owned(), jwks_url: jwks_url.to_owned(), audience })
}

impl Options {
    fn merge(self, file: Options) -> Options {
        Options {
            config: self.config,
            listen: self.listen.or(file.listen),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            root_token_file: self.root_token_file.or(file.root_token_file),
            master_key_file: self.master_key_file.or(file.master_key_file),
            jwt_issuers: if self.jwt_issuers.is_empty() { file.jwt_issuers } else { self.jwt_issuers },
            webhook_allow_private: self.webhook_allow_private.or(file.webhook_allow_private),
            federation_ambient_identity: self
                .federation_ambient_identity
                .or(file.federation_ambient_identity),
            federation_identity_loopback: self
                .federation_identity_loopback
                .or(file.federation_identity_loopback),
            federation_identity_vaults: if self.federation_identity_vaults.is_empty() {
                file.federation_identity_vaults
            } else {
                self.federation_identity_vaults
            },
            webhook_retry_schedule: self.webhook_retry_schedule.or(file.webhook_retry_schedule),
            scheduler_tick: self.scheduler_tick.or(file.scheduler_tick),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            rate_limit_token: self.rate_limit_token.or(file.rate_limit_token),
            rate_limit_tenant: self.rate_limit_tenant.or(file.rate_limit_tenant),
            log_format: self.log_format.or(file.log_format),
        }
    }

    /// Merges the config file (if any), applies defaults and checks every value.
    pub(crate) fn resolve(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => Options::default(),
        };
        let o = self.merge(file);
        let listen = o.listen.as_deref().unwrap_or("127.0.0.1:7200");
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen}: expected HOST:PORT"))?;
        let data_dir = o.data_dir.unwrap_or_else(|| PathBuf::from("./scaivault-data"));
        let database_url =
            o.database_url.unwrap_or_else(|| format!("sqlite://{}", data_dir.join("scaivault.db").display()));
        if !["sqlite:", "postgres://", "postgresql://"].iter().any(|p| database_url.starts_with(p)) {
            bail!("--database-url: expected sqlite://FILE or postgres://…");
        }
        let master_key_file = o.master_key_file.unwrap_or_else(|| data_dir.join("master.key"));
        let jwt_issuers = o
            .jwt_issuers
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse_issuer(s).with_context(|| format!("--jwt-issuer {s}")))
            .collect::<anyhow::Result<_>>()?;
        let schedule = o.webhook_retry_schedule.as_deref().unwrap_or("30s,5m,30m,2h,8h,24h");
        let webhook_retry_schedule =
            DurationList::parse(schedule).with_context(|| format!("--webhook-retry-schedule {schedule}"))?;
        let tick = o.scheduler_tick.as_deref().unwrap_or("10s");
        let scheduler_tick = DurationSpec::parse(tick).with_context(|| format!("--scheduler-tick {tick}"))?;
        if scheduler_tick.as_secs() == 0 {
            bail!("--scheduler-tick must be longer than zero");
        }
        let grace = o.shutdown_timeout.as_deref().unwrap_or("25s");
        let shutdown_timeout =
            DurationSpec::parse(grace).with_context(|| format!("--shutdown-timeout {grace}"))?;
        let tls = match (o.tls_cert, o.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let rate = |flag: &str, value: Option<String>| -> anyhow::Result<Option<RateLimit>> {
            value.map(|v| RateLimit::parse(&v).map_err(|e| anyhow::anyhow!("{flag} {v}: {e}"))).transpose()
        };
        let rate_limits = RateLimits {
            per_token: rate("--rate-limit-token", o.rate_limit_token)?,
            per_tenant: rate("--rate-limit-tenant", o.rate_limit_tenant)?,
        };
        let federation_identity_vaults = o
            .federation_identity_vaults
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                IdentityVault::parse(s.trim())
                    .map_err(|e| anyhow::anyhow!("--federation-identity-vault {s}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let federation_ambient_identity = o.federation_ambient_identity.unwrap_or(false);
        if !federation_identity_vaults.is_empty() && !federation_ambient_identity {
            bail!(
                "--federation-identity-vault names Vaults for the server's own identity: it needs --federation-ambient-identity"
            );
        }
        let federation_identity_loopback = o.federation_identity_loopback.unwrap_or(false);
        if federation_identity_loopback && !federation_ambient_identity {
            bail!(
                "--federation-identity-loopback lets the server's own identity go to this machine: it needs --federation-ambient-identity"
            );
        }
        let log_format = match o.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("--log-format {other}: expected text or json"),
        };
        Ok(Settings {
            listen,
            data_dir,
            database_url,
            root_token_file: o.root_token_file,
            master_key_file,
            jwt_issuers,
            webhook_allow_private: o.webhook_allow_private.unwrap_or(false),
            federation_ambient_identity,
            federation_identity_loopback,
            federation_identity_vaults,
            webhook_retry_schedule,
            scheduler_tick,
            shutdown_timeout,
            tls,
            rate_limits,
            log_format,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<Options> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
    // The parser's message without its source snippet, so the reason stays one line.
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("--config {}: {}", path.display(), e.message().trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Settings> {
        let mut all = vec!["scaivault-server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)?.options.resolve()
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).expect("defaults");
        assert_eq!(s.listen.to_string(), "127.0.0.1:7200");
        assert_eq!(s.database_url, "sqlite://./scaivault-data/scaivault.db");
        assert_eq!(s.master_key_file, PathBuf::from("./scaivault-data/master.key"));
        assert_eq!(s.webhook_retry_schedule.as_slice().len(), 6);
        assert!(!s.webhook_allow_private);
        assert!(!s.federation_ambient_identity, "the server's cloud identity is not lent by default");
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.shutdown_timeout.as_secs(), 25, "a stop finishes inside a 30 s grace period");
    }

    #[test]
    fn flag_beats_file() {
        let dir = tempfile_dir();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nscheduler-tick = \"5s\"\nlog-format = \"json\"\n",
        )
        .expect("write");
        let s = parse(&["--config", file.to_str().expect("utf8"), "--listen", "127.0.0.1:9100"]).expect("ok");
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(s.scheduler_tick.as_secs(), 5);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn malformed_flags_fail() {
        for args in [
            &["--listen", "nowhere"][..],
            &["--database-url", "mysql://x"],
            &["--scheduler-tick", "10"],
            &["--webhook-retry-schedule", "30s,x"],
            &["--jwt-issuer", "no-url"],
            &["--log-format", "xml"],
            &["--tls-cert", "a.pem"],
            &["--rate-limit-token", "10"],
            &["--rate-limit-tenant", "0/s"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let s = parse(&["--rate-limit-token", "10/s"]).expect("rate");
        assert_eq!(s.rate_limits.per_token.map(|r| r.per_second), Some(10.0));
        assert_eq!(s.rate_limits.per_tenant, None);
        let s = parse(&["--jwt-issuer", "https://idp=https://idp/jwks,aud=vault"]).expect("issuer");
        assert_eq!(s.jwt_issuers[0].audience.as_deref(), Some("vault"));
    }

    #[test]
    fn webhook_allow_private_is_a_switch_with_an_optional_boolish_value() {
        let cli = |args: &[&str]| {
            let mut all = vec!["scaivault-server"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        // A bare switch does not swallow the subcommand after it.
        let c = cli(&["--webhook-allow-private", "serve"]).expect("switch then subcommand");
        assert!(matches!(c.command, Some(Command::Serve)));
        assert_eq!(c.options.webhook_allow_private, Some(true));
        // The value the environment variable gives goes through the same parser: 1/0, yes/no, on/off.
        for (value, expected) in [("1", true), ("yes", true), ("true", true), ("0", false), ("off", false)] {
            let flag = format!("--webhook-allow-private={value}");
            let c = cli(&[flag.as_str()]).expect(value);
            assert_eq!(c.options.webhook_allow_private, Some(expected), "{value}");
        }
        assert!(cli(&["--webhook-allow-private=maybe"]).is_err());
    }

    #[test]
    fn identity_vaults_are_origins_and_bad_ones_refused() {
        let s = parse(&[
            "--federation-ambient-identity",
            "--federation-identity-vault=https://Vault.internal:8200/",
            "--federation-identity-vault=http://127.0.0.1:8200?namespace=team-a&mount=k8s",
        ])
        .expect("two vaults");
        assert_eq!(
            s.federation_identity_vaults,
            [
                IdentityVault::parse("https://vault.internal:8200").unwrap(),
                IdentityVault::parse("http://127.0.0.1:8200?namespace=team-a&mount=k8s").unwrap()
            ]
        );
        for bad in ["vault.internal", "https://u:p@vault.internal", "https://gw.corp/vault-a"] {
            let flag = format!("--federation-identity-vault={bad}");
            assert!(parse(&["--federation-ambient-identity", &flag]).is_err(), "{bad}");
        }
        let e = parse(&["--federation-identity-vault=https://vault.internal"]).unwrap_err();
        assert!(e.to_string().contains("needs --federation-ambient-identity"), "{e}");
    }

    #[test]
    fn loopback_lending_is_off_by_default_and_needs_the_ambient_identity() {
        assert!(!parse(&["--federation-ambient-identity"]).expect("ambient").federation_identity_loopback);
        let s = parse(&["--federation-ambient-identity", "--federation-identity-loopback"]).expect("both");
        assert!(s.federation_identity_loopback);
        let e = parse(&["--federation-identity-loopback"]).unwrap_err();
        assert!(e.to_string().contains("needs --federation-ambient-identity"), "{e}");
    }

    #[test]
    fn federation_ambient_identity_is_a_switch_also_read_from_the_file() {
        assert!(parse(&["--federation-ambient-identity"]).expect("switch").federation_ambient_identity);
        assert!(!parse(&["--federation-ambient-identity=no"]).expect("off").federation_ambient_identity);
        assert!(parse(&["--federation-ambient-identity=maybe"]).is_err());
        let dir = tempfile_dir();
        let file = dir.join("ambient.toml");
        std::fs::write(&file, "federation-ambient-identity = true\n").expect("write");
        let s = parse(&["--config", file.to_str().expect("utf8")]).expect("file");
        assert!(s.federation_ambient_identity);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scaivault-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
