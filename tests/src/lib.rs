//! End-to-end tests for ScaiVault: the real `scaivault-server` binary, started as a child process
//! on a loopback port, driven over HTTP with `reqwest`, stopped with real signals, and restarted on
//! the same storage. Nothing here links the server's crates; the tests see only what an operator
//! sees (the process, its exit status, its stdout and stderr, the files and the database it leaves).
//!
//! # The harness
//!
//! - [`server_binary`] finds `target/<profile>/scaivault-server` next to the test executable (which
//!   lives in `target/<profile>/deps/`) after running `cargo build -p scaivault-server-bin` once per
//!   test process, so `cargo nextest run -p scaivault-e2e` never tests a stale binary. Concurrent
//!   test processes each run the (no-op) build; cargo's own lock serialises them. Set
//!   `SCAIVAULT_E2E_SERVER_BIN` to a binary to skip the build.
//! - [`Scratch`] is a per-test temporary directory; it is kept (and its path printed) when the test
//!   panics, so the server logs of a failed test can be read.
//! - [`Backend`] makes a fresh, empty [`Storage`]: SQLite in a data directory of the scratch
//!   directory, or PostgreSQL in a new schema `e2e_<pid>_<counter>_<nanos>` of the database named by
//!   `SCAIVAULT_TEST_POSTGRES_URL` (created with `psql`, dropped when the storage is dropped unless
//!   the test panicked; `.ci/run` drops leftover `e2e_%` schemas). Without that variable a
//!   PostgreSQL test prints a notice and passes, except under `CI=true`, where it fails. The same
//!   [`Storage`] is passed to every start of a test, which is how restarts reach the same data.
//! - [`ServerCommand`] builds one invocation: storage flags, extra flags and environment (every
//!   inherited `SCAIVAULT_*` variable is removed first), stdout and stderr redirected to files in the
//!   scratch directory. [`ServerCommand::start`] listens on `127.0.0.1:0` and waits (at most 30 s)
//!   for the `listening on http://ADDR` line; [`ServerCommand::run_to_exit`] runs a command that is
//!   expected to end (a subcommand, a bad configuration) under the same deadline.
//! - [`ServerProcess`] is a running server: [`ServerProcess::base_url`], the root token read from
//!   `--root-token-file`, [`ServerProcess::sigkill`], [`ServerProcess::sigterm_and_wait`] (via the
//!   `kill` command), and its captured output. Dropping it kills the child.
//! - [`Api`] is a thin JSON client over one shared `reqwest::Client` per test ([`http_client`]:
//!   no proxy, 30 s timeout). Requests go to loopback only.
//! - [`LeakScanner`] looks for many values at once in storage bytes or logs, in every form a
//!   careless implementation could leave them in ([`leak_forms`]: raw, hex, standard and URL-safe
//!   base64 at every alignment), matching any run of [`MIN_FRAGMENT`] or more consecutive bytes, so
//!   a value split across SQLite overflow pages is found too.
//!
//! Every wait is a poll against a deadline; no test sleeps to synchronise.
//!
//! # Running
//!
//! `SCAIVAULT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo nextest run -p
//! scaivault-e2e`. The tests need the `kill` command, and `psql` and `pg_dump` for PostgreSQL.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

/// How long a server may take to print its `listening on` line, and a process to exit.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// Period of every poll loop.
const POLL: Duration = Duration::from_millis(20);

static FILE_COUNTER: AtomicU32 = AtomicU32::new(0);
static SCHEMA_COUNTER: AtomicU32 = AtomicU32::new(0);

// ---------------------------------------------------------------------------------------------
// The binary

/// The `scaivault-server` binary, built (once per test process) if needed.
///
/// # Panics
/// When the build fails or the binary cannot be found.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(|| {
        build_binary("scaivault-server-bin", "scaivault-server", "SCAIVAULT_E2E_SERVER_BIN")
            .map_err(|e| format!("{e:#}"))
    }) {
        Ok(path) => path,
        Err(e) => panic!("cannot provide the scaivault-server binary: {e}"),
    }
}

/// The `scaivault` command line binary, built (once per test process) if needed.
///
/// # Panics
/// When the build fails or the binary cannot be found.
pub fn cli_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(|| {
        build_binary("scaivault", "scaivault", "SCAIVAULT_E2E_CLI_BIN").map_err(|e| format!("{e:#}"))
    }) {
        Ok(path) => path,
        Err(e) => panic!("cannot provide the scaivault binary: {e}"),
    }
}

fn build_binary(package: &str, bin: &str, override_var: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(override_var) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{override_var}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    // target/<profile>/deps/<test executable>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("unexpected test executable location {}", exe.display()))?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => "dev",
        Some(other) => other,
        None => bail!("unexpected profile directory {}", profile_dir.display()),
    };
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("no workspace directory")?.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .arg("--profile")
        .arg(profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null());
    // What the test runner set for this package must not leak into the build.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_TARGET_TMPDIR", "NEXTEST"]
            .iter()
            .any(|p| key_text.starts_with(p))
        {
            build.env_remove(&key);
        }
    }
    let output = build.output().context("cannot run cargo build")?;
    if !output.status.success() {
        bail!(
            "cargo build -p {package} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = profile_dir.join(bin);
    if !binary.is_file() {
        bail!("cargo build succeeded but {} does not exist", binary.display());
    }
    Ok(binary)
}

// ---------------------------------------------------------------------------------------------
// Scratch directories

/// A per-test temporary directory, kept (and its path printed) when the test panics.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// # Panics
    /// When no temporary directory can be made.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("scaivault-e2e-").tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        Scratch { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("scratch directory kept for inspection: {}", kept.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One store that survives server restarts: the flags that select it, and a way to read its bytes.
#[derive(Debug)]
pub struct Storage {
    backend: Backend,
    data_dir: PathBuf,
    postgres: Option<PgSchema>,
}

#[derive(Debug)]
struct PgSchema {
    /// The database URL as given (for `psql` and `pg_dump`).
    admin_url: String,
    schema: String,
}

/// `SCAIVAULT_TEST_POSTGRES_URL`, or `None` (after a notice) when it is unset outside CI.
///
/// # Panics
/// Under `CI=true` when the variable is unset: CI must not skip PostgreSQL silently.
pub fn postgres_url() -> Option<String> {
    match std::env::var("SCAIVAULT_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but SCAIVAULT_TEST_POSTGRES_URL is not set: PostgreSQL tests cannot be skipped in CI"
            )
        }
        _ => {
            eprintln!("notice: SCAIVAULT_TEST_POSTGRES_URL is not set; this PostgreSQL test is skipped");
            None
        }
    }
}

/// Runs `sql` with `psql` against `url`; returns its unaligned, tuples-only output.
///
/// # Errors
/// When `psql` cannot run or the statement fails.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!("psql `{sql}` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Backend {
    /// A fresh, empty store under `dir`, or `None` when this is PostgreSQL and it is not configured
    /// (outside CI; the caller then returns, and the test passes with a notice).
    ///
    /// # Panics
    /// When PostgreSQL is configured but the schema cannot be created.
    pub fn fresh(self, dir: &Path) -> Option<Storage> {
        let data_dir = dir.join("data");
        match self {
            Backend::Sqlite => Some(Storage { backend: self, data_dir, postgres: None }),
            Backend::Postgres => {
                let url = postgres_url()?;
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let schema = format!(
                    "e2e_{}_{}_{nanos}",
                    std::process::id(),
                    SCHEMA_COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                if let Err(e) = psql(&url, &format!("create schema {schema}")) {
                    panic!("PostgreSQL at SCAIVAULT_TEST_POSTGRES_URL is not usable: {e:#}");
                }
                Some(Storage { backend: self, data_dir, postgres: Some(PgSchema { admin_url: url, schema }) })
            }
        }
    }
}

impl Storage {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The data directory (SQLite file and master key file; only the key file for PostgreSQL).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL schema holding every table, if this is PostgreSQL.
    pub fn schema(&self) -> Option<&str> {
        self.postgres.as_ref().map(|p| p.schema.as_str())
    }

    /// The server flags that select this store.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--data-dir"), self.data_dir.clone().into_os_string()];
        if let Some(pg) = &self.postgres {
            let sep = if pg.admin_url.contains('?') { '&' } else { '?' };
            args.push("--database-url".into());
            args.push(format!("{}{sep}options[search_path]={}", pg.admin_url, pg.schema).into());
        }
        args
    }

    /// Every byte the store keeps: each file under the data directory (SQLite database, `-wal`,
    /// `-shm`, key file), or a `pg_dump --data-only` of the schema.
    ///
    /// # Errors
    /// When a file cannot be read or `pg_dump` fails.
    pub fn raw_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.postgres {
            None => {
                let mut all = Vec::new();
                let mut files = 0;
                read_tree(&self.data_dir, &mut all, &mut files)?;
                if files == 0 {
                    bail!("no files under {}", self.data_dir.display());
                }
                Ok(all)
            }
            Some(pg) => {
                let output = Command::new("pg_dump")
                    .arg("--data-only")
                    .arg(format!("--schema={}", pg.schema))
                    .arg("-d")
                    .arg(&pg.admin_url)
                    .env("PGCONNECT_TIMEOUT", "10")
                    .stdin(Stdio::null())
                    .output()
                    .context("cannot run pg_dump")?;
                if !output.status.success() {
                    bail!("pg_dump failed: {}", String::from_utf8_lossy(&output.stderr).trim());
                }
                Ok(output.stdout)
            }
        }
    }
}

fn read_tree(dir: &Path, into: &mut Vec<u8>, files: &mut usize) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read_dir {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(&path, into, files)?;
        } else {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(into))
                .with_context(|| format!("read {}", path.display()))?;
            *files += 1;
        }
    }
    Ok(())
}

impl Drop for Storage {
    fn drop(&mut self) {
        // A failed test keeps its schema for inspection; `.ci/run` drops leftovers.
        if let Some(pg) = &self.postgres
            && !std::thread::panicking()
            && let Err(e) = psql(&pg.admin_url, &format!("drop schema if exists {} cascade", pg.schema))
        {
            eprintln!("warning: could not drop schema {}: {e:#}", pg.schema);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One invocation of the server binary being put together.
#[derive(Debug)]
pub struct ServerCommand {
    log_dir: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    root_token_file: Option<PathBuf>,
}

/// A command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The last non-empty line of stderr.
    pub fn last_stderr_line(&self) -> &str {
        self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
    }
}

impl ServerCommand {
    /// Stdout and stderr go to numbered files in `log_dir`.
    pub fn new(log_dir: &Path) -> ServerCommand {
        ServerCommand {
            log_dir: log_dir.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            root_token_file: None,
        }
    }

    /// The flags that select `storage`.
    #[must_use]
    pub fn storage(mut self, storage: &Storage) -> ServerCommand {
        self.args.extend(storage.args());
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServerCommand {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ServerCommand {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// `--root-token-file PATH`; [`ServerProcess::root_token`] reads it after start-up.
    #[must_use]
    pub fn root_token_file(mut self, path: &Path) -> ServerCommand {
        self.args.push("--root-token-file".into());
        self.args.push(path.as_os_str().to_owned());
        self.root_token_file = Some(path.to_owned());
        self
    }

    fn spawn(&self, extra: &[&str]) -> anyhow::Result<(Child, PathBuf, PathBuf)> {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let stdout_path = self.log_dir.join(format!("server-{n}.stdout"));
        let stderr_path = self.log_dir.join(format!("server-{n}.stderr"));
        let mut command = Command::new(server_binary());
        command
            .args(extra)
            .args(&self.args)
            .current_dir(&self.log_dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).context("stdout file")?)
            .stderr(File::create(&stderr_path).context("stderr file")?);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SCAIVAULT_") {
                command.env_remove(&key);
            }
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().context("cannot start scaivault-server")?;
        Ok((child, stdout_path, stderr_path))
    }

    /// Starts the server on `127.0.0.1:0` (unless `--listen` was given) and waits for its
    /// `listening on` line.
    ///
    /// # Panics
    /// When the process exits first or the line does not come within [`PROCESS_DEADLINE`].
    pub async fn start(self) -> ServerProcess {
        let listen: &[&str] =
            if self.args.iter().any(|a| a == "--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let (child, stdout_path, stderr_path) = self.spawn(listen).expect("spawn scaivault-server");
        let mut server =
            ServerProcess { child, addr: None, root_token: None, stdout_path, stderr_path, status: None };
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let addr = loop {
            if let Some(addr) = parse_listening(&server.stdout()) {
                break addr;
            }
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                server.status = Some(status);
                panic!(
                    "scaivault-server exited with {status} before listening\nstdout:\n{}\nstderr:\n{}",
                    server.stdout(),
                    server.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "scaivault-server did not print `listening on` within {PROCESS_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    server.stdout(),
                    server.stderr()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        server.addr = Some(addr);
        if let Some(path) = &self.root_token_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path).expect("read root token file");
            server.root_token = Some(text.trim().to_owned());
        }
        server
    }

    /// Runs a command that is expected to end (a subcommand, or a start that must fail) and
    /// collects its output.
    ///
    /// # Panics
    /// When it does not end within [`PROCESS_DEADLINE`] (it is killed first).
    pub async fn run_to_exit(self) -> Finished {
        let (mut child, stdout_path, stderr_path) = self.spawn(&[]).expect("spawn scaivault-server");
        let status = wait_with_deadline(&mut child, PROCESS_DEADLINE).await;
        let stdout = read_lossy(&stdout_path);
        let stderr = read_lossy(&stderr_path);
        match status {
            Some(status) => Finished { status, stdout, stderr },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "scaivault-server {:?} did not exit within {PROCESS_DEADLINE:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                    self.args
                );
            }
        }
    }
}

fn parse_listening(stdout: &str) -> Option<SocketAddr> {
    stdout.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("listening on ")?;
        rest.strip_prefix("http://").or_else(|| rest.strip_prefix("https://"))?.trim().parse().ok()
    })
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

async fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts a server on `storage` that writes its root token to `<dir>/root-token`, and returns it
/// with that token: the start almost every test begins with.
pub async fn start_with_root(dir: &Path, storage: &Storage) -> (ServerProcess, String) {
    let server =
        ServerCommand::new(dir).storage(storage).root_token_file(&dir.join("root-token")).start().await;
    let root = server.root_token().expect("root token").to_owned();
    (server, root)
}

/// A running (or stopped) server started by [`ServerCommand::start`]. Dropping it kills the child.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: Option<SocketAddr>,
    root_token: Option<String>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl ServerProcess {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("server address")
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The token in `--root-token-file` if that file existed once the server listened.
    pub fn root_token(&self) -> Option<&str> {
        self.root_token.as_deref()
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// SIGKILL, then reaps the child.
    ///
    /// # Panics
    /// When the process cannot be signalled or reaped.
    pub fn sigkill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            panic!("sigkill: the server had already exited with {status}");
        }
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait after SIGKILL");
        self.status = Some(status);
        status
    }

    /// Sends SIGTERM without waiting.
    ///
    /// # Panics
    /// When the `kill` command fails.
    pub fn sigterm(&self) {
        assert!(self.status.is_none(), "sigterm: the server had already exited");
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdin(Stdio::null())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits (at most [`PROCESS_DEADLINE`]) for the process to exit.
    ///
    /// # Panics
    /// When it does not exit in time.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match wait_with_deadline(&mut self.child, PROCESS_DEADLINE).await {
            Some(status) => {
                self.status = Some(status);
                status
            }
            None => panic!(
                "scaivault-server did not exit within {PROCESS_DEADLINE:?}\nstderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGTERM, then waits (at most [`PROCESS_DEADLINE`]) for the exit.
    pub async fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait().await
    }
}

/// Asserts that a server stopped well: exit status 0 and no panic message on stderr.
///
/// # Panics
/// When it did not.
pub fn assert_clean_exit(status: ExitStatus, server: &ServerProcess) {
    let stderr = server.stderr();
    assert!(status.success(), "the server exited with {status}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "the server panicked\nstderr:\n{stderr}");
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The one client a test uses: loopback only, so no proxy; every request bounded by 30 s.
///
/// # Panics
/// When the client cannot be built.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("reqwest client")
}

/// An answer: status, the raw body, and the body as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// `error.code` of an error body, or `""`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// JSON requests against one server with one token.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(client: &reqwest::Client, server: &ServerProcess, token: &str) -> Api {
        Api { client: client.clone(), base: server.base_url(), token: token.to_owned() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same server, another token.
    #[must_use]
    pub fn with_token(&self, token: &str) -> Api {
        Api { token: token.to_owned(), ..self.clone() }
    }

    /// Sends a request; `body` is sent verbatim as `application/json`.
    ///
    /// # Errors
    /// Transport errors (connection refused, reset, timeout, truncated body).
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| anyhow!("reading the body of a {status}: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, text, body })
    }

    /// # Panics
    /// On a transport error.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Reply {
        match self.try_send(method.clone(), path, body).await {
            Ok(reply) => reply,
            Err(e) => panic!("{method} {path}: {e:#}"),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body.to_string().into_bytes())).await
    }

    /// `PUT /v1/secrets/{path}` with `body` (a whole request: `{"data": …, …}`).
    pub async fn put_secret(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, &format!("/v1/secrets/{path}"), Some(body.to_string().into_bytes()))
            .await
    }

    /// `GET /v1/secrets/{path}`, or `?version=N`.
    pub async fn get_secret(&self, path: &str, version: Option<u64>) -> Reply {
        match version {
            Some(v) => self.get(&format!("/v1/secrets/{path}?version={v}")).await,
            None => self.get(&format!("/v1/secrets/{path}")).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values and leak detection

/// `n` random characters of `[A-Za-z0-9]` from the system random source.
///
/// # Panics
/// When `/dev/urandom` cannot be read.
pub fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect()
}

/// `n` random bytes.
///
/// # Panics
/// When `/dev/urandom` cannot be read.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    bytes
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_with(alphabet: &[u8; 64], input: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding.
pub fn base64(input: &[u8]) -> String {
    base64_with(B64_STD, input, true)
}

fn hex(input: &[u8]) -> String {
    input.iter().map(|b| format!("{b:02x}")).collect()
}

/// The forms in which `value` could sit in storage or a log if it were not encrypted: the raw
/// bytes, lowercase hex (how `pg_dump` prints `bytea`), and base64 in both alphabets at each of the
/// three alignments the value could have inside a larger encoded blob.
pub fn leak_forms(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![("raw".to_owned(), value.to_vec()), ("hex".to_owned(), hex(value).into_bytes())];
    for shift in 0..3 {
        let rest = &value[shift.min(value.len())..];
        let aligned = &rest[..rest.len() / 3 * 3];
        forms.push((format!("base64+{shift}"), base64_with(B64_STD, aligned, false).into_bytes()));
        forms.push((format!("base64url+{shift}"), base64_with(B64_URL, aligned, false).into_bytes()));
    }
    forms.retain(|(_, n)| !n.is_empty());
    forms
}

/// Chunks of this many bytes are looked up...
const CHUNK: usize = 16;
/// ...starting at every multiple of this offset in a needle, so any run of `CHUNK + STRIDE - 1`
/// consecutive needle bytes in a haystack contains one whole chunk.
const STRIDE: usize = 8;
/// Needles shorter than this are searched for whole.
pub const MIN_FRAGMENT: usize = CHUNK + STRIDE - 1;

/// A found fragment of a watched value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The label the value was watched under.
    pub label: String,
    /// `raw`, `hex`, `base64+N` or `base64url+N`.
    pub form: String,
    /// Where in the haystack.
    pub offset: usize,
}

/// Looks for many values, in every form of [`leak_forms`], in one pass over a haystack. A value of
/// [`MIN_FRAGMENT`] bytes or more is reported when any run of that many consecutive bytes of it
/// appears (so a value split across SQLite overflow pages is still found); a shorter one only whole.
#[derive(Debug, Default)]
pub struct LeakScanner {
    needles: Vec<(String, String, Vec<u8>)>,
    /// First 8 bytes of a chunk -> (needle, offset of the chunk in it).
    index: HashMap<u64, Vec<(usize, usize)>, BuildMulHasher>,
}

impl LeakScanner {
    pub fn new() -> LeakScanner {
        LeakScanner::default()
    }

    /// Watches `value` (every form of it) under `label`; labels, not values, appear in reports.
    pub fn watch(&mut self, label: &str, value: &[u8]) {
        for (form, bytes) in leak_forms(value) {
            let id = self.needles.len();
            if bytes.len() >= MIN_FRAGMENT {
                let mut offset = 0;
                while offset + CHUNK <= bytes.len() {
                    self.index.entry(key8(&bytes[offset..])).or_default().push((id, offset));
                    offset += STRIDE;
                }
            }
            self.needles.push((label.to_owned(), form, bytes));
        }
    }

    /// Every watched value found in `haystack`, at most one report per value and form.
    pub fn scan(&self, haystack: &[u8]) -> Vec<Leak> {
        let mut found: Vec<Option<usize>> = vec![None; self.needles.len()];
        if haystack.len() >= CHUNK {
            for at in 0..=haystack.len() - CHUNK {
                let Some(candidates) = self.index.get(&key8(&haystack[at..])) else { continue };
                for &(id, offset) in candidates {
                    let needle = &self.needles[id].2;
                    if found[id].is_none() && haystack[at..at + CHUNK] == needle[offset..offset + CHUNK] {
                        found[id] = Some(at);
                    }
                }
            }
        }
        for (id, (_, _, needle)) in self.needles.iter().enumerate() {
            if needle.len() < MIN_FRAGMENT {
                found[id] = haystack.windows(needle.len()).position(|w| w == needle.as_slice());
            }
        }
        found
            .into_iter()
            .enumerate()
            .filter_map(|(id, at)| {
                let (label, form, _) = &self.needles[id];
                at.map(|offset| Leak { label: label.clone(), form: form.clone(), offset })
            })
            .collect()
    }
}

fn key8(bytes: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(k)
}

/// A multiplicative hash for the `u64` chunk keys: much cheaper than SipHash in unoptimised test
/// builds, and the keys are not attacker-controlled.
#[derive(Debug, Default, Clone, Copy)]
struct BuildMulHasher;

#[derive(Debug, Default)]
struct MulHasher(u64);

impl std::hash::BuildHasher for BuildMulHasher {
    type Hasher = MulHasher;
    fn build_hasher(&self) -> MulHasher {
        MulHasher(0)
    }
}

impl std::hash::Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

/// Shorthand: the leaks of the given `(label, value)` pairs in `haystack`.
pub fn leaks_in(haystack: &[u8], values: &[(&str, &[u8])]) -> Vec<Leak> {
    let mut scanner = LeakScanner::new();
    for (label, value) in values {
        scanner.watch(label, value);
    }
    scanner.scan(haystack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_with(B64_URL, &[0xfb, 0xff], false), "-_8");
    }

    #[test]
    fn fragments_are_found_wherever_they_sit() {
        let value = random_alnum(200);
        let mut hay = random_bytes(5000);
        // 30 bytes from the middle of the value, as an overflow page split would leave them.
        hay.splice(1234..1234, value.as_bytes()[77..107].iter().copied());
        let leaks = leaks_in(&hay, &[("v", value.as_bytes())]);
        assert_eq!(leaks, vec![Leak { label: "v".into(), form: "raw".into(), offset: 1234 + (80 - 77) }]);
        assert!(leaks_in(&random_bytes(5000), &[("v", value.as_bytes())]).is_empty());
        // A value inside a base64 blob, at every alignment, and inside a hex dump.
        for prefix in 0..3 {
            let mut blob = random_bytes(prefix);
            blob.extend_from_slice(value.as_bytes());
            blob.extend_from_slice(&random_bytes(5));
            let encoded = base64(&blob);
            let forms: Vec<String> = leaks_in(encoded.as_bytes(), &[("v", value.as_bytes())])
                .into_iter()
                .map(|l| l.form)
                .collect();
            assert!(forms.iter().any(|f| f.starts_with("base64+")), "prefix {prefix}: {forms:?}");
            assert_eq!(leaks_in(hex(&blob).as_bytes(), &[("v", value.as_bytes())])[0].form, "hex");
        }
        let short = b"skt_short";
        let mut hay = random_bytes(100);
        hay.extend_from_slice(short);
        assert_eq!(leaks_in(&hay, &[("t", short)])[0].offset, 100);
    }
}
