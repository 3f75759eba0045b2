//! `scaivault-server`: reads the configuration, opens the store the database URL names, loads the
//! keys, and serves the API until SIGTERM or SIGINT. The only place that knows which store is used.

mod config;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, LogFormat, Settings};
use scaivault_core::{EventConfig, SystemClock, Vault, VaultConfig};
use scaivault_crypto::{RootKey, SecretBytes, load_or_create_key_file, root_key_from_base64};
use scaivault_server::{AppState, Stopping, router};
use scaivault_store::Store;
use scaivault_store_postgres::PostgresStore;
use scaivault_store_sqlite::SqliteStore;

/// glibc's allocator spent a fifth of an audited read's CPU time in `malloc`/`free` (buffers built on
/// the runtime's thread are freed on SQLite's); mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help and --version
        Err(e) => return usage(&e),
    };
    let settings = match cli.options.resolve() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    init_logging(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::RotateMasterKey => rotate_master_key(settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line, the reason, and a non-zero exit.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("scaivault-server: {}", one_line(&format!("{e:#}")));
    ExitCode::FAILURE
}

/// A malformed command line: clap's reason on one line (its usage and tips left out), exit 2.
fn usage(e: &clap::Error) -> ExitCode {
    let text = e.render().to_string();
    let reason = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let reason = reason.trim().strip_prefix("error: ").unwrap_or(reason.trim());
    eprintln!("scaivault-server: {reason} (see --help)");
    ExitCode::from(2)
}

/// Joins a message's lines, so a reason that spans several still prints as one.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCAIVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// A key file other users can read is accepted (a Kubernetes secret volume mounts `0644` unless told
/// otherwise), but the operator is told: anyone who reads it decrypts everything.
fn warn_if_others_can_read(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "the master key file is readable or writable by group or others; chmod 600 it"
        );
    }
}

fn root_key(settings: &Settings) -> anyhow::Result<RootKey> {
    if let Ok(text) = std::env::var("SCAIVAULT_MASTER_KEY") {
        return root_key_from_base64(&text).context("SCAIVAULT_MASTER_KEY");
    }
    let (key, created) = load_or_create_key_file(&settings.master_key_file)
        .with_context(|| format!("--master-key-file {}", settings.master_key_file.display()))?;
    if created {
        tracing::info!(path = %settings.master_key_file.display(), "created master key file");
    } else {
        warn_if_others_can_read(&settings.master_key_file);
    }
    Ok(key)
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = &settings.database_url;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(url).await.context("database unreachable")?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::connect(url).await.with_context(|| format!("cannot open {url}"))?;
    Ok(Arc::new(store))
}

/// Opens storage and the keys; on a first start, the root token goes where `--root-token-file`
/// says (or to stdout), which was checked to be writable before the token was created.
async fn open_vault(settings: &Settings) -> anyhow::Result<Vault> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&settings.data_dir)
        .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
    // Storage first: a start that cannot reach its database creates no key file.
    let store = open_store(settings).await?;
    let key = root_key(settings)?;
    let fresh = Vault::will_bootstrap(&*store).await.map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    let out = RootTokenOut::prepare(settings.root_token_file.as_deref(), fresh)?;
    let config = VaultConfig {
        rate_limits: settings.rate_limits,
        jwt_issuers: settings.jwt_issuers.clone(),
        federation_ambient_identity: settings.federation_ambient_identity,
        federation_identity_loopback: settings.federation_identity_loopback,
        federation_identity_vaults: settings.federation_identity_vaults.clone(),
        events: EventConfig {
            allow_private: settings.webhook_allow_private,
            retry_schedule: settings.webhook_retry_schedule.as_slice().iter().map(|d| d.as_std()).collect(),
            // Several replicas share a PostgreSQL database; a SQLite file has one server.
            tail_outbox: !settings.database_url.starts_with("sqlite:"),
            ..EventConfig::default()
        },
        ..VaultConfig::default()
    };
    let opened = Vault::open(store, key, Arc::new(SystemClock), config)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    out.announce(opened.root_token)?;
    Ok(opened.vault)
}

/// Where a first start's root token goes. The file is opened (created `0600` if missing) before
/// storage creates the token, so a start that could not save it fails with nothing created, and the
/// next start still makes one. It is written only when a token was created: a later start leaves it
/// as it is, even read-only.
enum RootTokenOut {
    Stdout,
    File { path: PathBuf, file: Option<File> },
}

impl RootTokenOut {
    fn prepare(path: Option<&Path>, fresh: bool) -> anyhow::Result<RootTokenOut> {
        let Some(path) = path else { return Ok(RootTokenOut::Stdout) };
        let file = if fresh { Some(open_token_file(path)?) } else { None };
        Ok(RootTokenOut::File { path: path.to_owned(), file })
    }

    #[allow(clippy::print_stdout)]
    fn announce(self, token: Option<SecretBytes>) -> anyhow::Result<()> {
        let Some(token) = token else { return Ok(()) };
        match self {
            RootTokenOut::File { path, file } => {
                // Opened now only if another replica's tenant vanished in between: not expected.
                let file = match file {
                    Some(file) => file,
                    None => open_token_file(&path)?,
                };
                write_secret_file(file, &token)
                    .with_context(|| format!("--root-token-file {}", path.display()))?;
                println!("root token written to {}", path.display());
            }
            RootTokenOut::Stdout => {
                let text = String::from_utf8_lossy(token.expose()).into_owned();
                println!("root token (shown once, store it safely): {text}");
            }
        }
        Ok(())
    }
}

fn open_token_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("--root-token-file {}", path.display()))
}

/// Replaces the file's content with the secret, readable by its owner only whatever its mode was.
fn write_secret_file(mut file: File, secret: &SecretBytes) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.set_len(0)?;
    file.write_all(secret.expose())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[allow(clippy::print_stdout)]
async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Checked before anything is opened, so a bad certificate fails start-up at once.
    let tls = match &settings.tls {
        Some((cert, key)) => Some(scaivault_server::tls_config(cert, key).context("--tls-cert/--tls-key")?),
        None => None,
    };
    // Bound before storage is opened: a start that cannot listen creates no root token.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let vault = open_vault(&settings).await?;
    let addr = listener.local_addr()?;
    let vault = Arc::new(vault);
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(vault.clone().run_delivery_worker(worker_stopped.clone()));
    let tail =
        vault.tails_outbox().then(|| tokio::spawn(vault.clone().run_event_tail(worker_stopped.clone())));
    let scheduler =
        tokio::spawn(vault.clone().run_scheduler(settings.scheduler_tick.as_std(), worker_stopped));
    let mut state = AppState::new(vault);
    // Only a build with the `benchmark` feature can skip auditing; release builds cannot.
    #[cfg(feature = "benchmark")]
    if std::env::var("SCAIVAULT_BENCHMARK_SKIP_AUDIT").is_ok_and(|v| v == "1") {
        tracing::warn!("audit records are NOT written (benchmark build)");
        state.skip_audit_for_benchmark = true;
    }
    let (stop, stopping) = Stopping::channel();
    state.stopping = stopping.clone();
    let app = router(state);
    let signal = shutdown_signal()?;
    let shutdown = async move {
        signal.await;
        let _ = stop.send(true);
    };
    // Requests still in flight this long after the signal lose their connections.
    let grace = settings.shutdown_timeout.as_std();
    let drain_deadline = async move {
        stopping.wait().await;
        tokio::time::sleep(grace).await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    tracing::info!(
        %addr,
        database = %redact_url(&settings.database_url),
        jwt_issuers = settings.jwt_issuers.len(),
        webhook_allow_private = settings.webhook_allow_private,
        webhook_retry_schedule = %settings.webhook_retry_schedule,
        scheduler_tick = %settings.scheduler_tick,
        "serving"
    );
    let served = async {
        match tls {
            Some(config) => scaivault_server::serve_tls(listener, app, config, shutdown).await,
            None => scaivault_server::serve(listener, app, shutdown).await,
        }
    };
    tokio::select! {
        served = served => served.context("server failed")?,
        () = drain_deadline => tracing::warn!(
            shutdown_timeout = %settings.shutdown_timeout,
            "requests still in flight at the shutdown timeout; closing their connections"
        ),
    }
    // Deliveries in flight are left to their lease: another replica, or the next start, sends them.
    let _ = stop_worker.send(true);
    let _ = worker.await;
    let _ = scheduler.await;
    if let Some(tail) = tail {
        let _ = tail.await;
    }
    tracing::info!("shut down");
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn rotate_master_key(settings: Settings) -> anyhow::Result<()> {
    let vault = open_vault(&settings).await?;
    let status = vault.rotate_master_key_unchecked().await.map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

/// A database URL for the log: no user information and no query string, where passwords can hide.
fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match (without_query.find("://"), without_query.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…{}", &without_query[..scheme], &without_query[at..])
        }
        _ => without_query.to_owned(),
    }
}

/// What stops the server gracefully: SIGTERM or SIGINT. The handlers are registered here, before
/// the server says it is listening; registered only once the returned future first ran, a signal
/// sent as soon as "listening on" appeared would still have killed the process outright.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    })
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_urls_lose_credentials_in_logs() {
        for (url, shown) in [
            ("postgres://u:pw@db:5432/v", "postgres://…@db:5432/v"),
            ("postgres://db/v?password=pw&sslmode=require", "postgres://db/v"),
            ("postgres://u@db/v?options[search_path]=x", "postgres://…@db/v"),
            ("sqlite://./scaivault-data/scaivault.db", "sqlite://./scaivault-data/scaivault.db"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("pw"));
        }
    }

    /// A SIGTERM that arrives as soon as the handlers are set up, before anything waited on them,
    /// stops the server gracefully instead of killing the process (this test's own, here).
    #[tokio::test]
    async fn a_sigterm_before_the_first_wait_is_still_a_graceful_stop() {
        let stop = super::shutdown_signal().expect("handlers");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), stop)
            .await
            .expect("the signal ends the wait");
    }
}
