//! Rotation with the real binary: the walkthrough of `seeds/001` end to end (webhook receiver,
//! forced rotation, the handler's new version, `secret.rotated`, the grace period, the audit trail),
//! and two replicas on one PostgreSQL database firing each `rotation.due` once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scaivault_e2e::{Api, Backend, Scratch, ServerCommand, ServerProcess, Storage, http_client};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const OAUTH: &str = "integrations/salesforce/oauth";

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if scaivault_e2e::postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

fn server(dir: &std::path::Path, storage: &Storage) -> ServerCommand {
    ServerCommand::new(dir)
        .storage(storage)
        .arg("--webhook-allow-private")
        .arg("--webhook-retry-schedule")
        .arg("1s")
        .arg("--scheduler-tick")
        .arg("1s")
}

async fn start_root(dir: &std::path::Path, storage: &Storage) -> (ServerProcess, String) {
    let server = server(dir, storage).root_token_file(&dir.join("root-token")).start().await;
    let root = server.root_token().expect("root token").to_owned();
    (server, root)
}

fn event(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("event JSON")
}

/// Waits (at most `secs`) until an event satisfying `want` has arrived; returns it.
async fn wait_for_event(receiver: &MockServer, secs: u64, want: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let got = receiver.received_requests().await.unwrap_or_default();
        if let Some(e) = got.iter().map(event).find(|e| want(e)) {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn the_seed_001_rotation_walkthrough() {
    for backend in backends() {
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_root(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let receiver = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;

        // Step 1: the credential, version 1.
        let r = api
            .put_secret(OAUTH, &json!({"data": {"client_id": "3MVG9-v1", "client_secret": "first"}}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        // Step 3: the webhook, and its smoke test.
        let r = api
            .post(
                "/v1/webhooks",
                &json!({"name": "sf-oauth-rotator", "url": format!("{}/scaivault/rotate-sf-oauth", receiver.uri()),
                        "secret": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                        "events": ["rotation.due", "secret.rotated"],
                        "filters": {"path_prefix": "integrations/salesforce/"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let hook = r.body["id"].as_str().expect("id").to_owned();
        let r = api.post(&format!("/v1/webhooks/{hook}/test"), &json!({})).await;
        assert_eq!(r.body["status"], "success", "{}", r.text);
        // Step 4: the policy (a short grace period, so the test can watch it close).
        let r = api
            .post(
                "/v1/rotation/policies",
                &json!({"name": "oauth-90d", "description": "90-day rotation for OAuth credentials",
                        "interval": "90d", "grace_period": "3s", "warn_before": "7d,1d",
                        "auto_generate": false, "webhook_ids": [hook]}),
            )
            .await;
        assert_eq!((r.status, r.body["id"].as_str()), (201, Some("rot_oauth-90d")), "{}", r.text);
        // Step 5: assign.
        let r = api.post("/v1/rotation/policies/rot_oauth-90d/secrets", &json!({"secret_path": OAUTH})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["state"], "scheduled");
        // Step 6: forced rotation.
        let r =
            api.post("/v1/rotation/policies/rot_oauth-90d/rotate", &json!({"secret_paths": [OAUTH]})).await;
        assert_eq!(r.status, 202, "{}", r.text);
        // 1. The handler receives rotation.due with due_now: true.
        let due =
            wait_for_event(&receiver, 15, |e| e["event_type"] == "rotation.due").await.expect("rotation.due");
        assert_eq!(due["data"]["due_now"], true);
        assert_eq!(due["path"], OAUTH);
        assert_eq!(due["data"]["policy_id"], "rot_oauth-90d");
        assert_eq!(due["data"]["current_version"], 1);
        // 2-3. It mints new credentials and PUTs them: version 2. v1 stays readable until the grace
        // period (3 s from now) closes.
        let r = api
            .put_secret(OAUTH, &json!({"data": {"client_id": "3MVG9-v2", "client_secret": "second"}}))
            .await;
        let grace_ends = Instant::now() + Duration::from_secs(3);
        assert_eq!((r.status, r.body["version"].as_u64()), (200, Some(2)), "{}", r.text);
        let r = api.get_secret(OAUTH, Some(1)).await;
        assert_eq!((r.status, r.body["data"]["client_secret"].as_str()), (200, Some("first")), "{}", r.text);
        let r = api.get(&format!("/v1/secrets/{OAUTH}/versions")).await;
        let versions: Vec<(u64, bool)> = r.body["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| (v["version"].as_u64().unwrap_or(0), v["is_current"].as_bool().unwrap_or(false)))
            .collect();
        assert_eq!(versions, [(2, true), (1, false)]);
        // 4. secret.rotated confirms.
        let rotated = wait_for_event(&receiver, 15, |e| e["event_type"] == "secret.rotated")
            .await
            .expect("secret.rotated");
        assert_eq!((rotated["data"]["version"].as_u64(), rotated["path"].as_str()), (Some(2), Some(OAUTH)));
        tokio::time::sleep_until((grace_ends + Duration::from_millis(500)).into()).await;
        let r = api.get_secret(OAUTH, Some(1)).await;
        assert_eq!((r.status, r.code()), (410, "secret_expired"), "{}", r.text);
        let r = api.get_secret(OAUTH, None).await;
        assert_eq!(r.body["data"]["client_secret"], "second");
        let r = api.get("/v1/rotation/policies/rot_oauth-90d/secrets").await;
        assert_eq!(r.body["secrets"][0]["state"], "scheduled");
        assert!(r.body["secrets"][0]["last_rotated_at"].is_string());
        // Step 8: the trail shows the write of v1, the policy's assignment (as its unassignment
        // would), the forced rotation, the write of v2, the reads.
        let r = api.get(&format!("/v1/audit/secrets/{OAUTH}")).await;
        let trail: Vec<(String, Option<u64>)> = r.body["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|l| (l["action"].as_str().unwrap_or_default().to_owned(), l["version"].as_u64()))
            .collect();
        let expected = [
            ("secret.write".to_owned(), Some(1)),
            ("rotation.assign".to_owned(), None),
            ("secret.rotate".to_owned(), None),
            ("secret.write".to_owned(), Some(2)),
            ("secret.read".to_owned(), Some(1)),
            ("secret.versions".to_owned(), None),
        ];
        assert_eq!(trail[..6], expected, "{backend:?}: {trail:?}");
        assert_eq!(r.body["logs"][1]["resource_id"], "rot_oauth-90d", "{backend:?}: {}", r.body["logs"][1]);
        // The forced rotation's record carries the status it was answered with.
        assert_eq!(r.body["logs"][2]["status_code"], 202, "{backend:?}: {}", r.body["logs"][2]);
        assert_eq!(r.body["logs"][2]["resource_id"], "rot_oauth-90d", "{backend:?}: {}", r.body["logs"][2]);
        drop(server);
    }
}

#[tokio::test]
async fn two_replicas_fire_each_rotation_due_once() {
    let Some(_) = scaivault_e2e::postgres_url() else { return };
    let scratch = Scratch::new();
    let storage = Backend::Postgres.fresh(scratch.path()).expect("storage");
    let (a, root) = start_root(scratch.path(), &storage).await;
    let b_logs = scratch.path().join("b");
    std::fs::create_dir_all(&b_logs).expect("log dir");
    let b = server(&b_logs, &storage).start().await;
    let client = http_client();
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let api_a = Api::new(&client, &a, &root);
    let api_b = Api::new(&client, &b, &root);
    let r = api_a
        .post("/v1/webhooks", &json!({"name": "due", "url": receiver.uri(), "events": ["rotation.due"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api_a.post("/v1/rotation/policies", &json!({"name": "fast", "interval": "5s"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    const SECRETS: usize = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let api = if w % 2 == 0 { api_a.clone() } else { api_b.clone() };
        tasks.spawn(async move {
            for n in (w..SECRETS).step_by(8) {
                let path = format!("fleet/db{n}");
                let r = api.put_secret(&path, &json!({"data": {"password": "p"}})).await;
                assert_eq!(r.status, 201, "{}", r.text);
                let r =
                    api.post("/v1/rotation/policies/rot_fast/secrets", &json!({"secret_path": path})).await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let count = |got: &[Request]| {
        let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
        for e in got.iter().map(event).filter(|e| e["data"]["due_now"] == true) {
            *per_path.entry(e["path"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        per_path
    };
    while Instant::now() < deadline {
        let got = receiver.received_requests().await.unwrap_or_default();
        if count(&got).len() >= SECRETS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a second firing to show up, were there one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_path = count(&receiver.received_requests().await.unwrap_or_default());
    assert_eq!(per_path.len(), SECRETS, "every due secret fired");
    let twice: Vec<_> = per_path.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "fired more than once: {twice:?}");
}
