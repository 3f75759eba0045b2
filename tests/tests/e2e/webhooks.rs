//! Webhooks and the event stream of the real binary: deliveries that the seed's receiver and a
//! Standard Webhooks verifier both accept, retries, durability across SIGKILL, two replicas on one
//! PostgreSQL database, refused addresses, the test endpoint, the live stream's filtering, and no
//! secret in any event, delivery log, log line or storage.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use scaivault_crypto::hmac_sha256;
use scaivault_e2e::{
    Api, Backend, LeakScanner, Scratch, ServerCommand, ServerProcess, Storage, http_client, random_alnum,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const HOOK_PATH: &str = "/scaivault/rotate-sf-oauth";

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if scaivault_e2e::postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

/// A server that may deliver to loopback receivers, retrying on `schedule`.
fn events_server(dir: &std::path::Path, storage: &Storage, schedule: &str) -> ServerCommand {
    ServerCommand::new(dir)
        .storage(storage)
        .arg("--webhook-allow-private")
        .arg("--webhook-retry-schedule")
        .arg(schedule)
}

async fn start_root(dir: &std::path::Path, storage: &Storage, schedule: &str) -> (ServerProcess, String) {
    let server = events_server(dir, storage, schedule).root_token_file(&dir.join("root-token")).start().await;
    let root = server.root_token().expect("root token").to_owned();
    (server, root)
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn header(r: &Request, name: &str) -> String {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The receiver of `seeds/001`, line for line: timestamp header, `sha256=` prefix, five-minute window,
/// HMAC-SHA256 over `"{timestamp}." + body` with the secret's bytes, constant-time comparison.
fn seed_receiver_accepts(secret: &str, timestamp: &str, sig: &str, body: &[u8], now: i64) -> bool {
    if timestamp.is_empty() || !sig.starts_with("sha256=") {
        return false;
    }
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if (now - ts).abs() > 300 {
        return false;
    }
    let expected = hex(&hmac_sha256(secret.as_bytes(), &[format!("{timestamp}.").as_bytes(), body]));
    // During a secret roll the header carries several signatures; a receiver on either secret accepts.
    sig.split(' ')
        .filter_map(|s| s.strip_prefix("sha256="))
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A Standard Webhooks verifier written from the specification: the key is the base64 part of a
/// `whsec_` secret, the signed content `"{webhook-id}.{webhook-timestamp}.{body}"`, the header a
/// space-separated list of `v1,<base64 HMAC-SHA256>`.
fn standard_verifier_accepts(
    secret: &str,
    id: &str,
    timestamp: &str,
    sig: &str,
    body: &[u8],
    now: i64,
) -> bool {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => match STANDARD.decode(b64) {
            Ok(k) => k,
            Err(_) => return false,
        },
        // Our documented rule for secrets not in `whsec_` form: the secret's own bytes.
        None => secret.as_bytes().to_vec(),
    };
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if id.is_empty() || (now - ts).abs() > 300 {
        return false;
    }
    let expected = STANDARD.encode(hmac_sha256(&key, &[format!("{id}.{timestamp}.").as_bytes(), body]));
    sig.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn assert_both_verifiers_accept(secret: &str, r: &Request) {
    let now = now_unix();
    let ts = header(r, "x-scaivault-timestamp");
    assert!(
        seed_receiver_accepts(secret, &ts, &header(r, "x-scaivault-signature"), &r.body, now),
        "the seed 001 receiver refused a delivery"
    );
    assert!(
        standard_verifier_accepts(
            secret,
            &header(r, "webhook-id"),
            &header(r, "webhook-timestamp"),
            &header(r, "webhook-signature"),
            &r.body,
            now
        ),
        "the Standard Webhooks verifier refused a delivery"
    );
    assert_eq!(header(r, "webhook-id"), header(r, "x-scaivault-event-id"));
}

/// Waits until the receiver holds at least `n` requests (at most `secs` seconds).
async fn wait_for_requests(receiver: &MockServer, n: usize, secs: u64) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = receiver.received_requests().await.unwrap_or_default();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event_of(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("event JSON")
}

async fn create_webhook(api: &Api, url: &str, secret: Option<&str>, events: &[&str]) -> Value {
    let mut body = json!({
        "name": format!("hook-{}", random_alnum(6)),
        "url": url,
        "events": events,
        "filters": {"path_prefix": "integrations/salesforce/"}
    });
    if let Some(s) = secret {
        body["secret"] = json!(s);
    }
    let r = api.post("/v1/webhooks", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

#[tokio::test]
async fn deliveries_verify_with_the_seed_receiver_and_standard_webhooks_and_leak_nothing() {
    for backend in backends() {
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_root(scratch.path(), &storage, "1s").await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let receiver = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
        let url = format!("{}{HOOK_PATH}", receiver.uri());

        // Seed 001 step 3: the receiver's secret is `openssl rand -hex 32`.
        let secret = hex(&scaivault_e2e::random_bytes(32));
        let hook = create_webhook(&api, &url, Some(&secret), &["secret.created", "secret.updated"]).await;
        let id = hook["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("wh_"));
        assert!(hook.get("secret").is_none(), "a given secret is never echoed");
        let r = api.post(&format!("/v1/webhooks/{id}/test"), &json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (r.body["status"].as_str(), r.body["response_code"].as_u64()),
            (Some("success"), Some(200))
        );

        // Seed 000 step 6: a subscription with a generated `whsec_` secret, shown once.
        let r = api
            .post(
                "/v1/subscriptions",
                &json!({"name": "reporting-service-sf-rotations", "paths": ["integrations/salesforce/oauth"],
                        "events": ["secret.rotated", "secret.updated"],
                        "delivery": {"type": "webhook", "url": format!("{}/sub", receiver.uri())}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let sub_secret = r.body["delivery"]["secret"].as_str().expect("generated secret").to_owned();
        assert!(sub_secret.starts_with("whsec_"));
        let sub_id = r.body["id"].as_str().expect("sub id").to_owned();
        assert!(sub_id.starts_with("sub_"));
        let r = api.get(&format!("/v1/subscriptions/{sub_id}")).await;
        assert!(r.body["delivery"].get("secret").is_none(), "shown once: {}", r.text);

        let mut scanner = LeakScanner::new();
        scanner.watch("webhook secret", secret.as_bytes());
        scanner.watch("subscription secret", sub_secret.as_bytes());
        for n in 0..3 {
            let value = format!("VALUE{}", random_alnum(24));
            scanner.watch(&format!("value {n}"), value.as_bytes());
            let r = api
                .put_secret("integrations/salesforce/oauth", &json!({"data": {"client_secret": value}}))
                .await;
            assert!(r.status == 200 || r.status == 201, "{}", r.text);
        }
        let r = api.put_secret("elsewhere/x", &json!({"data": {"k": "v"}})).await;
        assert_eq!(r.status, 201);

        // 1 test + 3 webhook deliveries + 2 subscription deliveries (updates only).
        let got = wait_for_requests(&receiver, 6, 20).await;
        assert_eq!(got.len(), 6, "requests: {}", got.len());
        let hook_requests: Vec<&Request> = got.iter().filter(|r| r.url.path() == HOOK_PATH).collect();
        let sub_requests: Vec<&Request> = got.iter().filter(|r| r.url.path() == "/sub").collect();
        assert_eq!((hook_requests.len(), sub_requests.len()), (4, 2));
        for r in &hook_requests {
            assert_both_verifiers_accept(&secret, r);
        }
        for r in &sub_requests {
            assert_both_verifiers_accept(&sub_secret, r);
        }
        let events: Vec<(String, Option<u64>)> = hook_requests
            .iter()
            .map(|r| event_of(r))
            .map(|e| (e["event_type"].as_str().unwrap_or_default().to_owned(), e["data"]["version"].as_u64()))
            .collect();
        assert_eq!(
            events,
            [
                ("webhook.test".to_owned(), None),
                ("secret.created".to_owned(), Some(1)),
                ("secret.updated".to_owned(), Some(2)),
                ("secret.updated".to_owned(), Some(3))
            ]
        );
        let e = event_of(hook_requests[1]);
        assert_eq!(e["tenant_id"], "tnt_default");
        assert_eq!(e["path"], "integrations/salesforce/oauth");
        assert!(e["event_id"].as_str().is_some_and(|i| i.starts_with("evt_")));
        let keys: Vec<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);

        // A tampered body or a stale timestamp is refused by the seed's receiver.
        let r = hook_requests[1];
        let (ts, sig) = (header(r, "x-scaivault-timestamp"), header(r, "x-scaivault-signature"));
        let mut tampered = r.body.clone();
        tampered[10] ^= 1;
        assert!(!seed_receiver_accepts(&secret, &ts, &sig, &tampered, now_unix()));
        assert!(!seed_receiver_accepts(&secret, &ts, &sig, &r.body, now_unix() + 301));
        assert!(!seed_receiver_accepts("another-secret", &ts, &sig, &r.body, now_unix()));

        // The delivery log shows every delivery with its attempt (recorded just after the receiver
        // answered).
        let deadline = Instant::now() + Duration::from_secs(10);
        let deliveries = loop {
            let r = api.get(&format!("/v1/webhooks/{id}/deliveries")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let all = r.body["deliveries"].as_array().expect("deliveries").clone();
            if all.iter().all(|d| d["status"] == "success") || Instant::now() > deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(deliveries.len(), 4);
        for d in &deliveries {
            assert_eq!(d["status"], "success", "{d}");
            assert_eq!(d["attempts"].as_array().map(Vec::len), Some(1));
            assert_eq!(d["attempts"][0]["response_code"], 200);
        }

        // No value and no webhook secret anywhere: deliveries (bodies and headers), the delivery
        // log, the webhook as shown, the live logs, and storage in clear.
        let mut seen = Vec::new();
        for r in &got {
            seen.extend_from_slice(&r.body);
            for (k, v) in &r.headers {
                seen.extend_from_slice(k.as_str().as_bytes());
                seen.extend_from_slice(v.as_bytes());
            }
        }
        seen.extend_from_slice(api.get(&format!("/v1/webhooks/{id}/deliveries")).await.text.as_bytes());
        seen.extend_from_slice(api.get("/v1/webhooks").await.text.as_bytes());
        seen.extend_from_slice(api.get("/v1/subscriptions").await.text.as_bytes());
        seen.extend_from_slice(api.get("/v1/audit").await.text.as_bytes());
        seen.extend_from_slice(server.stdout().as_bytes());
        seen.extend_from_slice(server.stderr().as_bytes());
        let leaks = scanner.scan(&seen);
        assert!(leaks.is_empty(), "{backend:?}: leaked {leaks:?}");
        let stored = storage.raw_bytes().expect("storage bytes");
        let leaks: Vec<_> =
            scanner.scan(&stored).into_iter().filter(|l| l.label.contains("secret")).collect();
        assert!(leaks.is_empty(), "{backend:?}: webhook secrets stored in clear: {leaks:?}");
    }
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_attempt() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_root(scratch.path(), &storage, "1s,1s,1s").await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let secret = "a-receiver-secret-of-some-length";
    let hook = create_webhook(&api, &format!("{}{HOOK_PATH}", receiver.uri()), Some(secret), &[]).await;
    let id = hook["id"].as_str().expect("id");
    api.put_secret("integrations/salesforce/oauth", &json!({"data": {"k": "v"}})).await;
    let got = wait_for_requests(&receiver, 3, 20).await;
    assert_eq!(got.len(), 3);
    // Retries keep their ids and are signed anew, each verifiable.
    let ids: BTreeSet<String> = got.iter().map(|r| header(r, "webhook-id")).collect();
    let deliveries: BTreeSet<String> = got.iter().map(|r| header(r, "x-scaivault-delivery-id")).collect();
    assert_eq!((ids.len(), deliveries.len()), (1, 1));
    for r in &got {
        assert_both_verifiers_accept(secret, r);
    }
    // The log records all three attempts once the last is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let r = api.get(&format!("/v1/webhooks/{id}/deliveries")).await;
        let d = r.body["deliveries"][0].clone();
        if d["status"] == "success" || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivery["status"], "success", "{delivery}");
    let codes: Vec<u64> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["response_code"].as_u64())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    let metrics = api.get("/metrics").await.text;
    for line in [
        "scaivault_webhook_deliveries_total{outcome=\"retried\"} 2",
        "scaivault_webhook_deliveries_total{outcome=\"delivered\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Redelivery sends the same event again, signed anew.
    let dlv = delivery["id"].as_str().expect("delivery id");
    let r = api.post(&format!("/v1/webhooks/{id}/deliveries/{dlv}/redeliver"), &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = wait_for_requests(&receiver, 4, 10).await;
    assert_eq!(got.len(), 4);
    assert_eq!(header(&got[3], "webhook-id"), header(&got[0], "webhook-id"));
    assert_both_verifiers_accept(secret, &got[3]);
}

#[tokio::test]
async fn pending_deliveries_survive_sigkill_and_arrive_after_restart() {
    for backend in backends() {
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (mut server, root) = start_root(scratch.path(), &storage, "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s").await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let receiver = MockServer::start().await;
        // The receiver is down (answers 503) while the writes are acknowledged.
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&receiver).await;
        create_webhook(&api, &format!("{}{HOOK_PATH}", receiver.uri()), Some("survives-a-kill-secret"), &[])
            .await;
        let mut written = BTreeSet::new();
        for n in 0..20 {
            let p = format!("integrations/salesforce/app{n}");
            let r = api.put_secret(&p, &json!({"data": {"k": "v"}})).await;
            assert_eq!(r.status, 201, "{}", r.text);
            written.insert(p);
        }
        server.sigkill();
        receiver.reset().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
        let server = events_server(scratch.path(), &storage, "1s").start().await;
        // Deliveries claimed at the kill come back when their lease (15 s) runs out.
        let deadline = Instant::now() + Duration::from_secs(40);
        let arrived = loop {
            let got = receiver.received_requests().await.unwrap_or_default();
            let paths: BTreeSet<String> =
                got.iter().map(|r| event_of(r)["path"].as_str().unwrap_or_default().to_owned()).collect();
            if paths == written || Instant::now() > deadline {
                break paths;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(arrived, written, "{backend:?}: every acknowledged write's event arrives after a restart");
        drop(server);
    }
}

/// Two servers on one fresh PostgreSQL schema (kept while the storage lives): the first made the
/// root token.
async fn two_replicas(scratch: &Scratch) -> (Storage, ServerProcess, ServerProcess, String) {
    let storage = Backend::Postgres.fresh(scratch.path()).expect("storage");
    let (a, root) = start_root(scratch.path(), &storage, "1s").await;
    let b_logs = scratch.path().join("b");
    std::fs::create_dir_all(&b_logs).expect("log dir");
    let b = events_server(&b_logs, &storage, "1s").start().await;
    (storage, a, b, root)
}

#[tokio::test]
async fn two_replicas_on_one_postgres_deliver_every_event_once() {
    let Some(_) = scaivault_e2e::postgres_url() else { return };
    let scratch = Scratch::new();
    let (_storage, a, b, root) = two_replicas(&scratch).await;
    let client = http_client();
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let api_a = Api::new(&client, &a, &root);
    let api_b = Api::new(&client, &b, &root);
    create_webhook(&api_a, &format!("{}{HOOK_PATH}", receiver.uri()), Some("two-replicas-secret"), &[]).await;
    const EVENTS: usize = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let api = if w % 2 == 0 { api_a.clone() } else { api_b.clone() };
        tasks.spawn(async move {
            for n in (w..EVENTS).step_by(8) {
                let r = api
                    .put_secret(&format!("integrations/salesforce/s{n}"), &json!({"data": {"n": n}}))
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    let got = wait_for_requests(&receiver, EVENTS, 60).await;
    // Give a duplicate time to show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.received_requests().await.unwrap_or(got);
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *per_event.entry(header(r, "x-scaivault-event-id")).or_default() += 1;
    }
    assert_eq!(per_event.len(), EVENTS, "every event arrives");
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_without_the_flag() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = scaivault_e2e::start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    for url in [
        "http://127.0.0.1/hook",
        "http://localhost./hook",
        "http://localhost:8080/hook",
        "http://0.0.0.0/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://user@127.0.0.1/",
        "http://192.168.0.10/",
        "http://172.16.0.1/",
        "ftp://example.com/",
        "not a url",
    ] {
        let r =
            api.post("/v1/webhooks", &json!({"name": "x", "url": url, "events": ["secret.updated"]})).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{url}: {}", r.text);
        let r = api
            .post(
                "/v1/subscriptions",
                &json!({"name": "x", "paths": ["a/*"], "delivery": {"type": "webhook", "url": url}}),
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text);
    }
    assert!(api.get("/v1/webhooks").await.body["webhooks"].as_array().is_some_and(Vec::is_empty));
}

#[tokio::test]
async fn the_test_endpoint_reports_failure_with_its_reason() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_root(scratch.path(), &storage, "1s").await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let hook =
        create_webhook(&api, &format!("http://{closed}/hook"), Some("test-endpoint-secret"), &[]).await;
    let id = hook["id"].as_str().expect("id");
    let r = api.post(&format!("/v1/webhooks/{id}/test"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "failed");
    assert!(r.body["response_code"].is_null());
    assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", r.text);

    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(418)).mount(&receiver).await;
    let r = api
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"url": receiver.uri()}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post(&format!("/v1/webhooks/{id}/test"), &json!({})).await;
    assert_eq!((r.body["status"].as_str(), r.body["response_code"].as_u64()), (Some("failed"), Some(418)));
    let r = api.post("/v1/webhooks/wh_nope/test", &json!({})).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
}

/// Reads SSE events from `response` until one on `until` arrives; returns the paths seen.
async fn read_stream(response: &mut reqwest::Response, until: &str) -> Vec<String> {
    let mut buffer = String::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(15), response.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                let e: Value = serde_json::from_str(data.trim()).expect("event JSON");
                let p = e["path"].as_str().unwrap_or_default().to_owned();
                seen.push(p.clone());
                if p == until {
                    return seen;
                }
            }
        }
    }
    seen
}

/// A stream with nothing to send looks at its token every 30 seconds: revoking the token ends an
/// idle stream too, within that time (takes about half a minute).
#[tokio::test]
async fn a_revoked_tokens_idle_stream_ends() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_root(scratch.path(), &storage, "1s").await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let r = api
        .post(
            "/v1/auth/tokens",
            &json!({"identity_type": "user", "identity_id": "watcher", "scopes": ["subscriptions:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (token, id) = (r.body["token"].as_str().expect("token"), r.body["id"].as_str().expect("id"));
    // A client with no overall timeout: the stream must be ended by the server.
    let patient = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut stream = patient
        .get(format!("{}/v1/events/stream", server.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let r = api.send(reqwest::Method::DELETE, &format!("/v1/auth/tokens/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let started = Instant::now();
    // Keep-alive comments may arrive meanwhile; the end of the body is what counts.
    let ended = loop {
        let left = Duration::from_secs(40).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break true,
            Ok(Err(e)) => panic!("the stream broke rather than ended: {e}"),
            Err(_) => break false,
        }
    };
    assert!(ended, "the stream of a revoked token was still open after 40 s with nothing to send");
}

#[tokio::test]
async fn the_live_stream_shows_only_the_callers_tenant_and_listable_paths() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_root(scratch.path(), &storage, "1s").await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let r = api
        .post(
            "/v1/policies",
            &json!({"name": "apps", "rules": [{"path_pattern": "apps/**", "permissions": ["list"]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy").to_owned();
    let r = api
        .post(
            &format!("/v1/policies/{policy}/bindings"),
            &json!({"identity_type": "service_account", "identity_id": "sa:watcher"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api
        .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:watcher", "scopes": ["subscriptions:read"]}))
        .await;
    let watcher = r.body["token"].as_str().expect("token").to_owned();
    let watcher_id = r.body["id"].as_str().expect("token id").to_owned();
    let r = api.post("/v1/identity/tenants", &json!({"id": "tnt_other", "name": "other"})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let mut stream = client
        .get(format!("{}/v1/events/stream", server.base_url()))
        .bearer_auth(&watcher)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"))
    );
    // Give the stream a moment to subscribe before the changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.put_secret("apps/web/db", &json!({"data": {"k": "v"}})).await;
    api.put_secret("infra/root-ca", &json!({"data": {"k": "v"}})).await;
    let r = api
        .send(
            reqwest::Method::PUT,
            "/v1/t/tnt_other/secrets/apps/web/db",
            Some(json!({"data": {"k": "v"}}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    api.send(reqwest::Method::DELETE, "/v1/secrets/apps/web/db", None).await;
    api.put_secret("apps/zz/last", &json!({"data": {"k": "v"}})).await;
    let seen = read_stream(&mut stream, "apps/zz/last").await;
    assert_eq!(seen, ["apps/web/db", "apps/web/db", "apps/zz/last"]);

    // Narrowed by path and type.
    let mut narrow = client
        .get(format!("{}/v1/events/stream?paths=apps/zz/*&events=secret.deleted", server.base_url()))
        .bearer_auth(&watcher)
        .send()
        .await
        .expect("stream");
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.put_secret("apps/zz/other", &json!({"data": {"k": "v"}})).await;
    api.send(reqwest::Method::DELETE, "/v1/secrets/apps/web/db", None).await;
    api.send(reqwest::Method::DELETE, "/v1/secrets/apps/zz/last", None).await;
    assert_eq!(read_stream(&mut narrow, "apps/zz/last").await, ["apps/zz/last"]);

    // Revoking the token ends its streams: the next event is not sent, the stream closes.
    let r = api.send(reqwest::Method::DELETE, &format!("/v1/auth/tokens/{watcher_id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    api.put_secret("apps/zz/after", &json!({"data": {"k": "v"}})).await;
    // (What was sent before the revocation may still sit unread in the connection.)
    let seen = read_stream(&mut stream, "apps/zz/after").await;
    assert!(!seen.iter().any(|p| p == "apps/zz/after"), "a revoked token still streams: {seen:?}");

    // Without the scope, no stream.
    let r = api
        .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:watcher", "scopes": ["secrets:list"]}))
        .await;
    let lister = api.with_token(r.body["token"].as_str().expect("token"));
    assert_eq!(lister.get("/v1/events/stream").await.status, 403);
}

#[tokio::test]
async fn the_live_stream_shows_changes_made_through_another_replica() {
    let Some(_) = scaivault_e2e::postgres_url() else { return };
    let scratch = Scratch::new();
    let (_storage, a, b, root) = two_replicas(&scratch).await;
    let client = http_client();
    let mut stream = client
        .get(format!("{}/v1/events/stream?paths=apps/**", b.base_url()))
        .bearer_auth(&root)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let api_a = Api::new(&client, &a, &root);
    api_a.put_secret("apps/one", &json!({"data": {"k": "v"}})).await;
    api_a.put_secret("apps/two", &json!({"data": {"k": "v"}})).await;
    assert_eq!(read_stream(&mut stream, "apps/two").await, ["apps/one", "apps/two"]);
    // A change made through the stream's own replica is not repeated by the tail.
    Api::new(&client, &b, &root).put_secret("apps/three", &json!({"data": {"k": "v"}})).await;
    api_a.put_secret("apps/four", &json!({"data": {"k": "v"}})).await;
    assert_eq!(read_stream(&mut stream, "apps/four").await, ["apps/three", "apps/four"]);
}
