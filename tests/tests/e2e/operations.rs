//! Operating the binary: refusing bad configuration, and rotating the master key offline.

use scaivault_e2e::{
    Api, Backend, Finished, Scratch, ServerCommand, assert_clean_exit, base64, http_client, random_alnum,
    random_bytes,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// 5. bad_configuration_exits_with_one_line

const PREFIX: &str = "scaivault-server: ";

/// What is wrong with how a start that had to fail failed, if anything.
fn check_refusal(case: &str, finished: &Finished, mentions: &[&str]) -> Option<String> {
    let line = finished.last_stderr_line();
    let mut wrong = Vec::new();
    if finished.status.success() {
        wrong.push(format!("exited with {}", finished.status));
    }
    if !line.starts_with(PREFIX) {
        wrong.push(format!("the last stderr line does not start with {PREFIX:?}"));
    }
    let reason_lines = finished.stderr.lines().filter(|l| l.starts_with(PREFIX)).count();
    if reason_lines != 1 {
        wrong.push(format!("{reason_lines} lines start with {PREFIX:?}, expected one"));
    }
    let lower = line.to_lowercase();
    if !mentions.iter().any(|m| lower.contains(m)) {
        wrong.push(format!("the reason mentions none of {mentions:?}"));
    }
    if finished.stdout.contains("listening on") {
        wrong.push("it listened".to_owned());
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "({case}) {}\n  last stderr line: {line:?}\n  stdout: {:?}\n  stderr: {:?}",
            wrong.join("; "),
            finished.stdout,
            finished.stderr
        )
    })
}

#[tokio::test]
async fn bad_configuration_exits_with_one_line() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let data = |name: &str| dir.join(format!("data-{name}"));
    let mut problems = Vec::new();

    // (a) a master key file that is not a key
    let bad_key = dir.join("bad.key");
    std::fs::write(&bad_key, "not base64\n").expect("write key file");
    let cmd = ServerCommand::new(dir)
        .arg("--data-dir")
        .arg(data("a"))
        .arg("--master-key-file")
        .arg(&bad_key)
        .arg("--listen")
        .arg("127.0.0.1:0");
    problems.extend(check_refusal(
        "a: --master-key-file with `not base64`",
        &cmd.run_to_exit().await,
        &["key"],
    ));

    // (b) a database nobody answers on
    let cmd = ServerCommand::new(dir)
        .arg("--data-dir")
        .arg(data("b"))
        .arg("--database-url")
        .arg("postgres://postgres@127.0.0.1:1/none")
        .arg("--listen")
        .arg("127.0.0.1:0");
    problems.extend(check_refusal("b: unreachable database", &cmd.run_to_exit().await, &["database"]));

    // (c) a listen address that is not one
    let cmd = ServerCommand::new(dir).arg("--data-dir").arg(data("c")).arg("--listen").arg("nowhere");
    problems.extend(check_refusal("c: --listen nowhere", &cmd.run_to_exit().await, &["listen"]));

    // (d) an unknown log format
    let cmd = ServerCommand::new(dir)
        .arg("--data-dir")
        .arg(data("d"))
        .arg("--log-format")
        .arg("xml")
        .arg("--listen")
        .arg("127.0.0.1:0");
    problems.extend(check_refusal(
        "d: --log-format xml",
        &cmd.run_to_exit().await,
        &["log-format", "log format"],
    ));

    // (e) a 16-byte key in the environment
    let cmd = ServerCommand::new(dir)
        .arg("--data-dir")
        .arg(data("e"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("SCAIVAULT_MASTER_KEY", base64(&random_bytes(16)));
    problems.extend(check_refusal("e: 16-byte SCAIVAULT_MASTER_KEY", &cmd.run_to_exit().await, &["key"]));

    // (f) an existing store opened with another root key
    let storage = Backend::Sqlite.fresh(&dir.join("f")).expect("sqlite");
    let mut server =
        ServerCommand::new(dir).storage(&storage).root_token_file(&dir.join("f-token")).start().await;
    let status = server.sigterm_and_wait().await;
    assert_clean_exit(status, &server);
    let cmd = ServerCommand::new(dir)
        .storage(&storage)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("SCAIVAULT_MASTER_KEY", base64(&random_bytes(32)));
    problems.extend(check_refusal(
        "f: existing store, another SCAIVAULT_MASTER_KEY",
        &cmd.run_to_exit().await,
        &["root key", "master key"],
    ));

    // (g) a flag that does not exist, (h) a value the flag's parser refuses, (i) an unknown key in
    // the TOML file: clap's and the TOML parser's several-line messages come out as one line.
    let cmd = ServerCommand::new(dir).arg("--data-dir").arg(data("g")).arg("--bogus-flag");
    problems.extend(check_refusal("g: --bogus-flag", &cmd.run_to_exit().await, &["bogus-flag"]));
    let cmd = ServerCommand::new(dir).arg("--data-dir").arg(data("h")).arg("--webhook-allow-private=maybe");
    problems.extend(check_refusal("h: --webhook-allow-private=maybe", &cmd.run_to_exit().await, &["maybe"]));
    let config = dir.join("bad.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nbogus-key = 1\n").expect("write config");
    let cmd = ServerCommand::new(dir).arg("--data-dir").arg(data("i")).arg("--config").arg(&config);
    problems.extend(check_refusal("i: unknown TOML key", &cmd.run_to_exit().await, &["bogus-key"]));

    assert!(problems.is_empty(), "bad configuration was not refused properly:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 6. offline_master_key_rotation

#[tokio::test]
async fn offline_master_key_rotation() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("sqlite");
    let client = http_client();
    let token_file = scratch.path().join("root-token");
    let mut server =
        ServerCommand::new(scratch.path()).storage(&storage).root_token_file(&token_file).start().await;
    let root = server.root_token().expect("root token").to_owned();
    let api = Api::new(&client, &server, &root);

    let writes: Vec<(&str, Value)> = vec![
        ("svc/a", json!({"v": random_alnum(32)})),
        ("svc/b", json!({"v": random_alnum(32), "w": random_alnum(8)})),
        ("svc/c", json!({"v": random_alnum(32)})),
        ("svc/c", json!({"v": random_alnum(32)})),
    ];
    for (path, data) in &writes {
        let reply = api.put_secret(path, &json!({ "data": data })).await;
        assert!(reply.status == 200 || reply.status == 201, "PUT {path}: {} {}", reply.status, reply.text);
    }
    let before = api.get("/v1/sys/key-status").await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.body["current_key_version"], json!(1), "{}", before.text);
    assert_eq!(before.body["rewrap_pending"], json!(0), "{}", before.text);
    let status = server.sigterm_and_wait().await;
    assert_clean_exit(status, &server);

    for round in 1..=2 {
        let finished =
            ServerCommand::new(scratch.path()).storage(&storage).arg("rotate-master-key").run_to_exit().await;
        assert!(
            finished.status.success(),
            "rotate-master-key #{round} exited with {}\nstdout:\n{}\nstderr:\n{}",
            finished.status,
            finished.stdout,
            finished.stderr
        );
        assert!(
            !finished.stdout.to_lowercase().contains("root token"),
            "rotate-master-key made a root token"
        );
    }

    let second_token_file = scratch.path().join("root-token-second");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&second_token_file)
        .start()
        .await;
    assert!(!second_token_file.exists(), "the restart after rotation made a new root token");
    let api = Api::new(&client, &server, &root);
    let after = api.get("/v1/sys/key-status").await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.body["current_key_version"], json!(3), "{}", after.text);
    assert_eq!(after.body["rewrap_pending"], json!(0), "{}", after.text);
    let versions = after.body["key_versions"].as_array().expect("key_versions");
    let mut numbers: Vec<u64> = versions.iter().filter_map(|v| v["version"].as_u64()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3], "{}", after.text);
    for v in versions {
        let expected = if v["version"] == json!(3) { writes.len() } else { 0 };
        assert_eq!(
            v["data_keys"],
            json!(expected),
            "data keys under master key {}: {}",
            v["version"],
            after.text
        );
    }

    let mut seen = std::collections::HashMap::new();
    for (path, data) in &writes {
        let version = seen.entry(*path).and_modify(|n| *n += 1).or_insert(1u64);
        let reply = api.get_secret(path, Some(*version)).await;
        assert_eq!(reply.status, 200, "GET {path}?version={version} after rotation: {}", reply.text);
        assert_eq!(reply.body["data"], *data, "GET {path}?version={version} after rotation");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. one SQLite file, one server; a first start that fails loses no root token

/// A second server on a SQLite file another one has open refuses to start, naming the reason (it
/// would serve from stale caches and collide on the audit chain); once the first stops, it starts.
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let storage = Backend::Sqlite.fresh(&dir.join("s")).expect("sqlite");
    let mut first =
        ServerCommand::new(dir).storage(&storage).root_token_file(&dir.join("token")).start().await;
    let second = ServerCommand::new(dir).storage(&storage).arg("--listen").arg("127.0.0.1:0");
    if let Some(problem) = check_refusal("second server", &second.run_to_exit().await, &["in use"]) {
        panic!("{problem}");
    }
    let status = first.sigterm_and_wait().await;
    assert_clean_exit(status, &first);
    let mut again = ServerCommand::new(dir).storage(&storage).start().await;
    let status = again.sigterm_and_wait().await;
    assert_clean_exit(status, &again);
}

/// A first start that fails before it could hand the root token over (its file cannot be written,
/// its port is taken) creates none: the next good start still prints one, and it works.
#[tokio::test]
async fn a_first_start_that_fails_keeps_the_root_token_for_the_next() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let storage = Backend::Sqlite.fresh(&dir.join("s")).expect("sqlite");
    let mut problems = Vec::new();

    let unwritable = dir.join("no-such-dir").join("token");
    let cmd = ServerCommand::new(dir)
        .storage(&storage)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .root_token_file(&unwritable);
    problems.extend(check_refusal(
        "unwritable --root-token-file",
        &cmd.run_to_exit().await,
        &["root-token-file"],
    ));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let cmd = ServerCommand::new(dir)
        .storage(&storage)
        .arg("--listen")
        .arg(&port)
        .root_token_file(&dir.join("token-a"));
    problems.extend(check_refusal("port taken", &cmd.run_to_exit().await, &["listen"]));
    drop(taken);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // An existing token file that others may read is written as the owner's only.
    let token_file = dir.join("token-b");
    std::fs::write(&token_file, "stale\n").expect("write");
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let mut server = ServerCommand::new(dir).storage(&storage).root_token_file(&token_file).start().await;
    let root = server.root_token().expect("a root token after the failed starts").to_owned();
    assert_ne!(root, "stale");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_file).expect("meta").permissions());
    assert_eq!(mode & 0o777, 0o600, "the root token file is readable by others");
    let client = http_client();
    let whoami = Api::new(&client, &server, &root).get("/v1/auth/whoami").await;
    assert_eq!(whoami.status, 200, "{}", whoami.text);
    let status = server.sigterm_and_wait().await;
    assert_clean_exit(status, &server);
}

/// A master key file others can read still starts the server (a secret volume may mount it so),
/// with a warning naming the fix; one only its owner reads starts without it.
#[tokio::test]
async fn a_master_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let dir = scratch.path();
    let storage = Backend::Sqlite.fresh(&dir.join("s")).expect("sqlite");
    let warning = "readable or writable by group or others";
    let mut first = ServerCommand::new(dir).storage(&storage).start().await;
    assert_clean_exit(first.sigterm_and_wait().await, &first);
    assert!(!first.stderr().contains(warning), "{}", first.stderr());
    let mut quiet = ServerCommand::new(dir).storage(&storage).start().await;
    assert_clean_exit(quiet.sigterm_and_wait().await, &quiet);
    assert!(!quiet.stderr().contains(warning), "a 0600 key file: {}", quiet.stderr());
    let key = storage.data_dir().join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut loose = ServerCommand::new(dir).storage(&storage).start().await;
    assert_clean_exit(loose.sigterm_and_wait().await, &loose);
    let stderr = loose.stderr();
    assert!(stderr.contains(warning) && stderr.contains("chmod 600"), "{stderr}");
    let text = std::fs::read_to_string(&key).expect("key");
    assert!(!stderr.contains(text.trim()), "the key itself is never logged");
}
