//! The command tree: flags, their environment twins, and the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "scaivault",
    version,
    about = "The ScaiVault command line",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage, 3 not found, 4 access denied \
                  (or authentication needed), 5 server unreachable or unavailable."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Server URL [env: SCAIVAULT_URL or SCAIVAULT_ADDR] [default: http://127.0.0.1:7200]
    #[arg(long, global = true)]
    pub(crate) url: Option<String>,
    /// Bearer token [env: SCAIVAULT_TOKEN]
    #[arg(long, global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// File holding the token (must not be readable by others) [env: SCAIVAULT_TOKEN_FILE]
    #[arg(long, global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust besides the system's, for a server behind a private CA
    /// [env: SCAIVAULT_CA_CERT]
    #[arg(long, global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// A named profile of the profiles file (url, token_file, ca_cert) [env: SCAIVAULT_PROFILE]
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,
    /// Output format: table or json (export: dotenv or json)
    #[arg(long, global = true, value_enum)]
    pub(crate) format: Option<Format>,
    /// Same as --format json
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Dotenv,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Read and write secrets
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Access policies
    #[command(subcommand)]
    Policies(PoliciesCmd),
    /// Rotation policies
    #[command(subcommand)]
    Rotation(RotationCmd),
    /// Webhooks
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Federation backends: existing stores fronted by this server
    #[command(subcommand)]
    Federation(FederationCmd),
    /// The audit trail
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Who you are, and tokens
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Import a .env file: each variable its own secret under --prefix, or grouped with --map
    Import(ImportArgs),
    /// Print a secret's fields as a .env file (--format dotenv, the default) or JSON
    Export(ExportArgs),
    /// Run a command with secrets' fields as environment variables
    Run(RunArgs),
    /// Shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCmd {
    /// Write a new version: fields as KEY=VALUE, or a JSON object from --json-file (- for stdin)
    Write {
        path: String,
        fields: Vec<String>,
        #[arg(long = "type")]
        secret_type: Option<String>,
        /// Comma-separated tags
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        json_file: Option<String>,
        /// Only if the current version is this one (0: only if it does not exist)
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Read the current (or a given) version
    Read {
        path: String,
        #[arg(long)]
        version: Option<u64>,
        /// Print only this field's bare value
        #[arg(long)]
        field: Option<String>,
    },
    /// List secrets (paths and metadata, never values)
    List {
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        tag: Option<String>,
    },
    /// A secret's versions (every page, newest first)
    Versions { path: String },
    /// Delete a secret (it can be undeleted)
    Delete { path: String },
    /// Make rotation due now under the secret's policy
    Rotate { path: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PoliciesCmd {
    /// Create a policy from rules (PATTERN:PERM[,PERM…][:deny]) or a JSON file
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long = "rule")]
        rules: Vec<String>,
        #[arg(long)]
        file: Option<String>,
    },
    /// List policies
    List,
    /// Bind a policy to an identity or group
    Bind {
        policy_id: String,
        #[arg(long, default_value = "service_account")]
        identity_type: String,
        #[arg(long)]
        identity: String,
    },
    /// Which rule allows or blocks PERMISSION on PATH (for you, or --identity)
    Test {
        path: String,
        permission: String,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        identity_type: Option<String>,
        /// Comma-separated groups
        #[arg(long)]
        groups: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RotationCmd {
    /// Create a rotation policy (its id is rot_NAME)
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        interval: String,
        #[arg(long)]
        grace_period: Option<String>,
        /// Comma-separated durations, e.g. 7d,1d
        #[arg(long)]
        warn_before: Option<String>,
        #[arg(long)]
        auto_generate: bool,
        #[arg(long)]
        rotation_timeout: Option<String>,
        #[arg(long = "webhook")]
        webhooks: Vec<String>,
    },
    /// List rotation policies
    List,
    /// Assign a secret to a policy
    Assign { policy_id: String, path: String },
    /// Make rotation due now for these secrets (none: every assigned one)
    Rotate { policy_id: String, paths: Vec<String> },
    /// A policy's secrets and their state
    Status { policy_id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCmd {
    /// Register a webhook (a generated secret is shown once)
    Create {
        #[arg(long)]
        name: String,
        /// Where deliveries go (`--url` names the ScaiVault server itself)
        #[arg(id = "webhook_url", long = "webhook-url")]
        url: String,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long)]
        path_prefix: Option<String>,
    },
    /// List webhooks
    List,
    /// Deliver a webhook.test event now
    Test { id: String },
    /// The delivery log, newest first, one page at a time
    Deliveries {
        id: String,
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a page: the `next_cursor` an earlier listing printed
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCmd {
    /// Configure a backend from its JSON body (as the API takes it) in a file, or - for stdin
    Create {
        #[arg(long)]
        file: String,
    },
    /// List backends
    List,
    /// One backend's configuration
    Get { id: String },
    /// Change a backend: the fields of a JSON file (or - for stdin) replace those it has
    Update {
        id: String,
        #[arg(long)]
        file: String,
    },
    /// Remove a backend (nothing in the backend itself is touched)
    Delete { id: String },
    /// Ask the backend now: state, latency, last sync
    Status { id: String },
    /// Run one sync of a sync-mode backend now, and print its report
    Sync { id: String },
    /// The paths a manual conflict resolution flagged
    Conflicts { id: String },
    /// Settle a flagged path: keep the local or the backend's version
    Resolve {
        id: String,
        path: String,
        #[arg(long, value_parser = ["local", "backend"])]
        winner: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Search the trail; --start and --end take RFC 3339 or "1 hour ago"
    Query {
        #[arg(long)]
        identity_id: Option<String>,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a page: the `next_cursor` an earlier query printed
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Check the trail's hash chain
    Verify,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthCmd {
    /// The identity, tenant, scopes and groups of the token in use
    Whoami,
    /// Personal access tokens
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Issue a token (shown once)
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "service_account")]
        identity_type: String,
        #[arg(long)]
        identity_id: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List token records
    List,
    /// Revoke a token at once
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnConflict {
    /// Leave an existing secret as it is
    Skip,
    /// Write a new version
    Overwrite,
    /// Stop with an error
    Fail,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The .env file
    pub(crate) file: PathBuf,
    /// Path prefix of the secrets written
    #[arg(long)]
    pub(crate) prefix: String,
    /// VAR=SECRET:FIELD[:TYPE]: put VAR as FIELD of PREFIX/SECRET; with any --map, unmapped
    /// variables are skipped
    #[arg(long = "map")]
    pub(crate) maps: Vec<String>,
    /// Show what would be written, write nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long, value_enum, default_value_t = OnConflict::Overwrite)]
    pub(crate) on_conflict: OnConflict,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    pub(crate) path: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A secret whose fields become variables (FIELD upper-cased); repeatable, later wins
    #[arg(long = "path", required = true)]
    pub(crate) paths: Vec<String>,
    /// The command and its arguments, after --
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A webhook's address is never taken for the server's (which would send the token there).
    #[test]
    fn a_webhooks_address_is_not_the_servers() {
        let cli = Cli::try_parse_from([
            "scaivault",
            "--url",
            "http://127.0.0.1:7200",
            "webhooks",
            "create",
            "--name",
            "hook",
            "--webhook-url",
            "https://hooks.example.com/in",
            "--event",
            "secret.updated",
        ])
        .unwrap();
        assert_eq!(cli.global.url.as_deref(), Some("http://127.0.0.1:7200"));
        let Command::Webhooks(WebhooksCmd::Create { url, .. }) = cli.command else {
            panic!("webhooks create")
        };
        assert_eq!(url, "https://hooks.example.com/in");
    }
}
