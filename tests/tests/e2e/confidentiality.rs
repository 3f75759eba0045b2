//! Secret values and tokens stay out of storage (only ciphertext) and out of the logs.

use reqwest::Method;
use scaivault_e2e::{
    Api, Backend, LeakScanner, Scratch, ServerCommand, assert_clean_exit, http_client, random_alnum,
    start_with_root,
};
use serde_json::{Value, json};

fn describe(leaks: &[scaivault_e2e::Leak]) -> String {
    leaks
        .iter()
        .map(|l| format!("{} ({} form) at byte {}", l.label, l.form, l.offset))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// 3. storage_holds_no_plaintext

#[tokio::test]
async fn storage_holds_no_plaintext_sqlite() {
    storage_holds_no_plaintext(Backend::Sqlite).await;
}

#[tokio::test]
async fn storage_holds_no_plaintext_postgres() {
    storage_holds_no_plaintext(Backend::Postgres).await;
}

async fn storage_holds_no_plaintext(backend: Backend) {
    let scratch = Scratch::new();
    let Some(storage) = backend.fresh(scratch.path()) else { return };
    let client = http_client();
    let (mut server, root) = start_with_root(scratch.path(), &storage).await;
    let api = Api::new(&client, &server, &root);

    let old_password = random_alnum(40);
    let password = random_alnum(40);
    let username = random_alnum(40);
    let service_password = random_alnum(40);
    let host = random_alnum(40);
    let nested = random_alnum(40);
    let big = random_alnum(100 * 1024);
    let secrets: Vec<(&str, Value)> = vec![
        ("prod/db/password", json!({ "password": old_password })),
        ("prod/db/password", json!({ "password": password })),
        (
            "prod/service/credentials",
            json!({"username": username, "password": service_password, "host": host, "port": 5432,
                   "nested": {"token": nested, "list": [1, 2]}}),
        ),
        ("prod/tls/bundle", json!({ "pem": big })),
    ];
    for (path, data) in &secrets {
        let reply = api.put_secret(path, &json!({ "data": data })).await;
        assert!(reply.status == 200 || reply.status == 201, "PUT {path}: {} {}", reply.status, reply.text);
    }
    let old = api.get_secret("prod/db/password", Some(1)).await;
    assert_eq!((old.status, &old.body["data"]), (200, &secrets[0].1), "{}", old.text);
    for (path, data) in &secrets[1..] {
        let reply = api.get_secret(path, None).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        assert_eq!(reply.body["data"], *data, "GET {path}");
    }
    let status = server.sigterm_and_wait().await;
    assert_clean_exit(status, &server);

    let raw = storage.raw_bytes().expect("storage bytes");
    assert!(
        raw.len() > 100 * 1024,
        "only {} bytes of storage: the 100 KiB secret's ciphertext is not where the scan looks",
        raw.len()
    );
    let mut scanner = LeakScanner::new();
    for (label, value) in [
        ("superseded password", &old_password),
        ("password", &password),
        ("username field", &username),
        ("password field", &service_password),
        ("host field", &host),
        ("nested field", &nested),
        ("100 KiB value", &big),
    ] {
        scanner.watch(label, value.as_bytes());
    }
    scanner.watch("whole multi-field object", secrets[2].1.to_string().as_bytes());
    scanner.watch("root token", root.as_bytes());
    let leaks = scanner.scan(&raw);
    assert!(leaks.is_empty(), "{backend:?} storage holds plaintext:\n{}", describe(&leaks));

    let logs = format!("{}\n{}", server.stdout(), server.stderr());
    let leaks = scanner.scan(logs.as_bytes());
    assert!(leaks.is_empty(), "the server's output holds secrets:\n{}", describe(&leaks));
}

// ---------------------------------------------------------------------------------------------
// 4. logs_never_carry_values_or_tokens

#[tokio::test]
async fn logs_never_carry_values_or_tokens() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("sqlite");
    let client = http_client();
    let token_file = scratch.path().join("root-token");
    let mut server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&token_file)
        .arg("--log-format")
        .arg("json")
        .start()
        .await;
    let root = server.root_token().expect("root token").to_owned();
    let api = Api::new(&client, &server, &root);
    let mut scanner = LeakScanner::new();
    scanner.watch("root token", root.as_bytes());

    // Writes and reads.
    let first = random_alnum(40);
    let second = random_alnum(40);
    scanner.watch("value v1", first.as_bytes());
    scanner.watch("value v2", second.as_bytes());
    let reply = api.put_secret("ci/deploy/key", &json!({"data": {"key": first}})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = api
        .put_secret(
            "ci/deploy/key",
            &json!({"data": {"key": second}, "metadata": {"description": "deploy key"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = api.get_secret("ci/deploy/key", None).await;
    assert_eq!((reply.status, &reply.body["data"]["key"]), (200, &json!(second)), "{}", reply.text);
    let reply = api.get_secret("ci/deploy/key", Some(1)).await;
    assert_eq!((reply.status, &reply.body["data"]["key"]), (200, &json!(first)), "{}", reply.text);

    // Writes refused for their shape; none may echo what the body carried.
    let secret_strings: Vec<String> = (0..4).map(|_| format!("SECRET{}", random_alnum(32))).collect();
    for (i, s) in secret_strings.iter().enumerate() {
        scanner.watch(&format!("secret in malformed body {i}"), s.as_bytes());
    }
    let [a, b, c, d] = [&secret_strings[0], &secret_strings[1], &secret_strings[2], &secret_strings[3]];
    let bad_bodies = [
        format!(r#"{{"data": {{"k": "{a}"}}, "cas": "{b}"}}"#),
        format!(r#"{{"data": {{"k": {c}}}}}"#),
        format!(r#"{{"data": "{d}"}}"#),
        format!(r#"{{"data": {{"k": "{a}"}}"#),
    ];
    for body in &bad_bodies {
        let reply = api.send(Method::PUT, "/v1/secrets/ci/deploy/bad", Some(body.clone().into_bytes())).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_request"), "body {body}: {}", reply.text);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "an error without a message: {}", reply.text);
        for s in &secret_strings {
            assert!(!reply.text.contains(s.as_str()), "the error echoes the request body: {}", reply.text);
        }
    }

    // An issued token, bound by a policy to what it may read, used for what it may and may not do.
    let reply = api
        .post(
            "/v1/policies",
            &json!({"name": "ci-deploy-read", "rules": [{"path_pattern": "ci/deploy/*", "permissions": ["read"]}]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let policy_id = reply.body["id"].as_str().expect("policy id").to_owned();
    let reply = api
        .post(
            &format!("/v1/policies/{policy_id}/bindings"),
            &json!({"identity_type": "service_account", "identity_id": "sa:ci"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = api
        .post(
            "/v1/auth/tokens",
            &json!({"name": "ci", "identity_type": "service_account", "identity_id": "sa:ci",
                "scopes": ["secrets:read"], "ttl": "1h"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let issued = reply.body["token"].as_str().expect("token in the answer").to_owned();
    assert!(issued.starts_with("skt_"), "issued token shape");
    scanner.watch("issued token", issued.as_bytes());
    let reader = api.with_token(&issued);
    let reply = reader.get_secret("ci/deploy/key", None).await;
    assert_eq!((reply.status, &reply.body["data"]["key"]), (200, &json!(second)), "{}", reply.text);
    let reply = reader.put_secret("ci/deploy/key", &json!({"data": {"key": "nope"}})).await;
    assert_eq!((reply.status, reply.code()), (403, "access_denied"), "{}", reply.text);

    // A token that does not exist.
    let bogus = format!("skt_{}", random_alnum(43));
    scanner.watch("unknown token", bogus.as_bytes());
    let reply = api.with_token(&bogus).get_secret("ci/deploy/key", None).await;
    assert_eq!((reply.status, reply.code()), (401, "token_expired"), "{}", reply.text);
    assert!(!reply.text.contains(&bogus), "the error echoes the token: {}", reply.text);

    let status = server.sigterm_and_wait().await;
    assert_clean_exit(status, &server);

    let stdout = server.stdout();
    let stderr = server.stderr();
    assert!(
        stdout.lines().any(|l| l == format!("root token written to {}", token_file.display())),
        "stdout:\n{stdout}"
    );
    let leaks = scanner.scan(format!("{stdout}\n{stderr}").as_bytes());
    assert!(leaks.is_empty(), "the server's output carries secrets:\n{}", describe(&leaks));

    assert!(!stderr.trim().is_empty(), "--log-format json wrote no log at all");
    for (n, line) in stderr.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            matches!(parsed, Ok(Value::Object(_))),
            "stderr line {} is not a JSON object with --log-format json: {line}",
            n + 1
        );
    }
}
