//! The in-memory caches of tokens, tenants, policies, secrets, webhook filters and rotation
//! schedules against the real binary: on one process a change is seen by the very next request;
//! with two replicas on one PostgreSQL database, what one replica changes reaches the other's
//! caches (through the database's change announcements), also after the announcement connection
//! was cut.

use std::time::{Duration, Instant};

use scaivault_e2e::{
    Api, Backend, Reply, Scratch, ServerCommand, ServerProcess, Storage, http_client, postgres_url, psql,
};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const PATH: &str = "app/db";

/// A service account that may read `app/*`; returns the policy id, the token's id and the token.
async fn reader(admin: &Api) -> (String, String, String) {
    let r = admin
        .post(
            "/v1/policies",
            &json!({"name": "app-read", "rules": [{"path_pattern": "app/*", "permissions": ["read"]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy id").to_owned();
    let r = admin
        .post(
            &format!("/v1/policies/{policy}/bindings"),
            &json!({"identity_type": "service_account", "identity_id": "sa:app"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .post(
            "/v1/auth/tokens",
            &json!({"identity_type": "service_account", "identity_id": "sa:app", "scopes": ["secrets:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("token id").to_owned();
    (policy, id, r.body["token"].as_str().expect("token").to_owned())
}

/// Rewrites the reader's policy so it no longer covers `app/*`.
async fn narrow(admin: &Api, policy: &str) {
    let body = json!({"name": "app-read", "rules": [{"path_pattern": "other/*", "permissions": ["read"]}]});
    let r = admin
        .send(reqwest::Method::PUT, &format!("/v1/policies/{policy}"), Some(body.to_string().into_bytes()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn write(api: &Api, password: &str) {
    let r = api.put_secret(PATH, &json!({"data": {"password": password}})).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
}

/// Reads until `done` holds for the answer, for at most ten seconds; returns the last answer.
async fn read_until(api: &Api, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get_secret(PATH, None).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most ten seconds) until the server reports its caches on (`true`) or off; panics
/// if it never does. Without this the replica tests would pass on a server that never caches.
async fn caches_become(api: &Api, on: bool) {
    let want = format!("scaivault_caches_enabled {}", u8::from(on));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = api.get("/metrics").await.text;
        if metrics.lines().any(|l| l == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "caches never became {}: {metrics}",
            if on { "on" } else { "off" }
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn password(r: &Reply) -> &str {
    r.body["data"]["password"].as_str().unwrap_or_default()
}

async fn change_everything(readers: &Api, elsewhere: &Api, policy: &str) {
    // A new version written elsewhere replaces the cached one.
    write(elsewhere, "second").await;
    let r = read_until(readers, |r| password(r) == "second").await;
    assert_eq!(password(&r), "second", "the new version was not seen: {}", r.text);

    // A deleted secret stops being served.
    let r = elsewhere.send(reqwest::Method::DELETE, &format!("/v1/secrets/{PATH}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = read_until(readers, |r| r.status == 404).await;
    assert_eq!(r.status, 404, "a deleted secret was still served: {}", r.text);
    write(elsewhere, "third").await;
    let r = read_until(readers, |r| password(r) == "third").await;
    assert_eq!(password(&r), "third", "{}", r.text);

    // A policy change elsewhere takes the permission away.
    narrow(elsewhere, policy).await;
    let r = read_until(readers, |r| r.status == 403).await;
    assert_eq!(r.status, 403, "a withdrawn permission still allowed the read: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_sees_its_own_changes_at_once() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&scratch.path().join("root-token"))
        .start()
        .await;
    let client = http_client();
    let admin = Api::new(&client, &server, server.root_token().expect("root token"));
    let (policy, id, token) = reader(&admin).await;
    let app = admin.with_token(&token);
    write(&admin, "first").await;
    for _ in 0..3 {
        assert_eq!(password(&app.get_secret(PATH, None).await), "first");
    }
    // No waiting here: every change must show in the very next request.
    write(&admin, "second").await;
    assert_eq!(password(&app.get_secret(PATH, None).await), "second");
    narrow(&admin, &policy).await;
    assert_eq!(app.get_secret(PATH, None).await.status, 403);
    let r = admin.send(reqwest::Method::DELETE, &format!("/v1/auth/tokens/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(app.get_secret(PATH, None).await.status, 401, "a revoked token was accepted");
}

/// A server on SQLite that may deliver to loopback, its root API, and a receiver answering `status`.
async fn hooked_server(status: u16) -> (Scratch, Storage, ServerProcess, Api, MockServer) {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let server =
        server(scratch.path(), &storage).root_token_file(&scratch.path().join("root-token")).start().await;
    let admin = Api::new(&http_client(), &server, server.root_token().expect("root token"));
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status)).mount(&receiver).await;
    (scratch, storage, server, admin, receiver)
}

/// A webhook on `app/` for `events`, delivering to `receiver`; returns its id.
async fn create_hook(admin: &Api, receiver: &MockServer, events: &[&str]) -> String {
    let r = admin
        .post(
            "/v1/webhooks",
            &json!({"name": "app-hook", "url": format!("{}/hook", receiver.uri()), "events": events,
                    "filters": {"path_prefix": "app/"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("webhook id").to_owned()
}

/// On one process, a write sees the webhook changes made just before it: a webhook created, its
/// events changed (twice), and its deletion (no API shows a deleted webhook's deliveries, so the
/// outbox table is read directly: a stale copy would queue one there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_writes_see_webhook_changes_at_once() {
    let (_scratch, storage, _server, admin, receiver) = hooked_server(200).await;
    write(&admin, "first").await;
    write(&admin, "second").await;
    let hook = create_hook(&admin, &receiver, &["secret.updated"]).await;
    // Deliveries are stored with the write that causes them, so each count is exact at once.
    let deliveries = || async {
        let r = admin.get(&format!("/v1/webhooks/{hook}/deliveries")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["deliveries"].as_array().map_or(0, Vec::len)
    };
    let set_events = |events: &'static [&'static str]| {
        let (admin, hook) = (&admin, &hook);
        async move {
            let body = json!({"events": events}).to_string().into_bytes();
            let r = admin.send(reqwest::Method::PATCH, &format!("/v1/webhooks/{hook}"), Some(body)).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    write(&admin, "third").await;
    assert_eq!(deliveries().await, 1, "a write missed the webhook created before it");
    set_events(&["secret.deleted"]).await;
    write(&admin, "fourth").await;
    assert_eq!(deliveries().await, 1, "a write used the webhook's old events");
    set_events(&["secret.updated"]).await;
    write(&admin, "fifth").await;
    assert_eq!(deliveries().await, 2, "a write used the webhook's old events");
    let r = admin.send(reqwest::Method::DELETE, &format!("/v1/webhooks/{hook}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    write(&admin, "sixth").await;
    assert_eq!(stored_deliveries(&storage, &hook), 0, "a write queued a delivery to the deleted webhook");
}

/// The deliveries to `webhook` in a SQLite store's outbox, read outside the server.
fn stored_deliveries(storage: &Storage, webhook: &str) -> u64 {
    let db = storage.data_dir().join("scaivault.db");
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=30)\n\
                  print(c.execute('SELECT count(*) FROM deliveries WHERE webhook_id = ?', (sys.argv[2],)).fetchone()[0])\n";
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .arg(webhook)
        .output()
        .expect("python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("a count")
}

/// A webhook the delivery worker disables (its receiver answered `410 Gone`) gets nothing from the
/// writes after it, though the writes before had cached it among the tenant's webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_disabled_by_its_receiver_gets_no_more_deliveries() {
    let (_scratch, _storage, _server, admin, receiver) = hooked_server(410).await;
    let hook = create_hook(&admin, &receiver, &["secret.created", "secret.updated"]).await;
    write(&admin, "first").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin.get(&format!("/v1/webhooks/{hook}")).await;
        if r.body["active"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the webhook was never disabled: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write(&admin, "second").await;
    let r = admin.get(&format!("/v1/webhooks/{hook}/deliveries")).await;
    assert_eq!(r.body["deliveries"].as_array().map(Vec::len), Some(1), "{}", r.text);
}

/// A server that may deliver to loopback receivers and looks for due rotations every second.
fn server(dir: &std::path::Path, storage: &Storage) -> ServerCommand {
    ServerCommand::new(dir).storage(storage).arg("--webhook-allow-private").arg("--scheduler-tick").arg("1s")
}

/// Two replicas on one PostgreSQL store, and the root token's API on each.
async fn two_replicas(storage: &Storage, scratch: &Scratch) -> (ServerProcess, ServerProcess, Api, Api) {
    let a = server(scratch.path(), storage).root_token_file(&scratch.path().join("root-token")).start().await;
    let b_logs = scratch.path().join("b");
    std::fs::create_dir_all(&b_logs).expect("log dir");
    let b = server(&b_logs, storage).start().await;
    let client = http_client();
    let root = a.root_token().expect("root token").to_owned();
    let (admin_a, admin_b) = (Api::new(&client, &a, &root), Api::new(&client, &b, &root));
    (a, b, admin_a, admin_b)
}

/// Two replicas on a fresh PostgreSQL schema with their caches on, or `None` without PostgreSQL.
async fn replicas_caching() -> Option<(Scratch, Storage, ServerProcess, ServerProcess, Api, Api)> {
    postgres_url()?;
    let scratch = Scratch::new();
    let storage = Backend::Postgres.fresh(scratch.path()).expect("storage");
    let (a, b, admin_a, admin_b) = two_replicas(&storage, &scratch).await;
    caches_become(&admin_a, true).await;
    caches_become(&admin_b, true).await;
    Some((scratch, storage, a, b, admin_a, admin_b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sees_what_another_changed() {
    let Some((_scratch, _storage, _a, _b, admin_a, admin_b)) = replicas_caching().await else { return };
    let (policy, id, token) = reader(&admin_a).await;
    let app_a = admin_a.with_token(&token);
    write(&admin_a, "first").await;
    // Served (and cached) by replica A.
    for _ in 0..3 {
        assert_eq!(password(&app_a.get_secret(PATH, None).await), "first");
    }
    change_everything(&app_a, &admin_b, &policy).await;

    // A token revoked through replica B stops working on replica A.
    let r = admin_b
        .post(
            "/v1/policies",
            &json!({"name": "all-app", "rules": [{"path_pattern": "app/**", "permissions": ["read"]}]}),
        )
        .await;
    let all = r.body["id"].as_str().expect("policy id").to_owned();
    admin_b
        .post(
            &format!("/v1/policies/{all}/bindings"),
            &json!({"identity_type": "service_account", "identity_id": "sa:app"}),
        )
        .await;
    let r = read_until(&app_a, |r| r.status == 200).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = admin_b.send(reqwest::Method::DELETE, &format!("/v1/auth/tokens/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = read_until(&app_a, |r| r.status == 401).await;
    assert_eq!(r.status, 401, "a token revoked on another replica was still accepted: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_announcement_connection_is_recovered() {
    let Some(url) = postgres_url() else { return };
    let scratch = Scratch::new();
    let storage = Backend::Postgres.fresh(scratch.path()).expect("storage");
    let (_a, _b, admin_a, admin_b) = two_replicas(&storage, &scratch).await;
    caches_become(&admin_a, true).await;
    write(&admin_a, "first").await;
    assert_eq!(password(&admin_a.get_secret(PATH, None).await), "first");

    // Cut every listening connection of this database (other tests' replicas only lose their
    // caches for a moment; that is the behaviour under test).
    let cut = psql(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
    )
    .expect("psql");
    let cut: u32 = cut.trim().parse().expect("a count");
    assert!(cut >= 2, "both replicas listen for changes ({cut} cut)");
    // The loss is noticed: replica A stops using its caches (a change now could go unannounced).
    caches_become(&admin_a, false).await;
    write(&admin_b, "second").await;
    let r = read_until(&admin_a, |r| password(r) == "second").await;
    assert_eq!(
        password(&r),
        "second",
        "a change made while the subscription was down was not seen: {}",
        r.text
    );
    // The subscription comes back, the caches with it, and later changes still arrive.
    caches_become(&admin_a, true).await;
    assert_eq!(password(&admin_a.get_secret(PATH, None).await), "second");
    write(&admin_b, "third").await;
    let r = read_until(&admin_a, |r| password(r) == "third").await;
    assert_eq!(password(&r), "third", "{}", r.text);
}

/// Writes through `api` (at most ten seconds, a new version each time) until `done` holds.
async fn write_until<F: std::future::Future<Output = bool>>(api: &Api, done: impl Fn() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        write(api, &format!("v{n}")).await;
        if done().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// What a write fans out to and completes is cached too: a webhook and a rotation schedule made
/// through replica B are followed by replica A's writes of a secret A had already written (and so
/// had cached "no webhooks" and "no schedule" for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_webhooks_and_schedules_made_on_another_replica() {
    let Some((_scratch, _storage, _a, _b, admin_a, admin_b)) = replicas_caching().await else { return };
    write(&admin_a, "first").await;
    write(&admin_a, "second").await;

    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let hook = create_hook(&admin_b, &receiver, &["secret.updated", "rotation.due", "secret.rotated"]).await;
    let received = |event_type: &'static str| {
        let receiver = &receiver;
        async move {
            receiver.received_requests().await.unwrap_or_default().iter().any(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .is_ok_and(|e| e["event_type"] == event_type && e["path"] == PATH)
            })
        }
    };
    assert!(
        write_until(&admin_a, || received("secret.updated")).await,
        "replica A's writes never reached a webhook created through replica B"
    );

    let r = admin_b
        .post(
            "/v1/rotation/policies",
            &json!({"name": "app-30d", "interval": "30d", "grace_period": "1h", "webhook_ids": [hook]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy id").to_owned();
    let r =
        admin_b.post(&format!("/v1/rotation/policies/{policy}/secrets"), &json!({"secret_path": PATH})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin_b
        .post(&format!("/v1/rotation/policies/{policy}/rotate"), &json!({"secret_paths": [PATH]}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !received("rotation.due").await {
        assert!(Instant::now() < deadline, "rotation.due never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The due rotation is completed by the next write, wherever it is made.
    let rotated = || {
        let (admin_b, policy) = (&admin_b, &policy);
        async move {
            let r = admin_b.get(&format!("/v1/rotation/policies/{policy}/secrets")).await;
            r.body["secrets"][0]["last_rotated_at"].is_string()
        }
    };
    assert!(
        write_until(&admin_a, rotated).await,
        "replica A's writes never completed a rotation scheduled through replica B"
    );
    assert!(write_until(&admin_a, || received("secret.rotated")).await, "secret.rotated never arrived");
}

/// Every secret request consults the tenant's federation mounts, kept in memory: a proxy mount
/// laid through replica B makes replica A refuse writes below it as soon as the change is
/// announced (A had its list of no mounts in memory already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_made_on_another_replica_is_followed_at_once() {
    let Some((_scratch, _storage, _a, _b, admin_a, admin_b)) = replicas_caching().await else { return };
    write(&admin_a, "first").await;
    let backend = json!({
        "name": "vault-prod",
        "type": "hashicorp_vault",
        "mode": "proxy",
        "mount": "external/vault",
        "connection": {"address": "http://127.0.0.1:9", "auth_method": "approle",
                       "credentials_path": "infra/federation/vault-approle"},
        "path_mapping": [{"source": "external/vault/**", "target": "secret/data/**"}],
    });
    let r = admin_b.post("/v1/federation/backends", &backend).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Caches are kept for 30 s: a refusal within 2 s comes from the announcement.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r =
            admin_a.put_secret(&format!("external/vault/probe{attempt}"), &json!({"data": {"v": "x"}})).await;
        if r.status == 409 {
            assert_eq!(r.body["error"]["code"], "read_only_path", "{}", r.text);
            break;
        }
        assert!(Instant::now() < deadline, "replica A still writes under B's new mount: {}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
