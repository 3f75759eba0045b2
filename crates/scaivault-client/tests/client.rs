//! The client against a stand-in server (wiremock, built from the contract's error and secret
//! shapes): error details, retries with `Retry-After`, and every behaviour of the read cache.

use std::time::{Duration, Instant};

use scaivault_api::ErrorCode;
use scaivault_client::{CacheConfig, Client, Error, Event, EventType};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn secret(version: u64, password: &str) -> serde_json::Value {
    json!({"path": "app/db", "version": version, "data": {"password": password}, "secret_type": "kv",
           "metadata": {}, "created_at": "2026-01-01T00:00:00Z", "created_by": "user:root", "expires_at": null})
}

fn client(server: &MockServer, cache: Option<CacheConfig>) -> Client {
    let mut b = Client::builder(server.uri()).token("skt_test").retries(2, Duration::from_millis(10));
    if let Some(c) = cache {
        b = b.cache(c);
    }
    b.build().expect("client")
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test]
async fn errors_carry_the_contract_code_message_and_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secrets/app/missing"))
        .and(header("authorization", "Bearer skt_test"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"code": "secret_not_found", "message": "secret not found", "request_id": "req_42"}}),
        ))
        .mount(&server)
        .await;
    let err = client(&server, None).read_secret("app/missing", None).await.expect_err("missing");
    assert_eq!(err.code(), Some(ErrorCode::SecretNotFound));
    assert_eq!(err.request_id(), Some("req_42"));
    assert!(err.is_not_found() && !err.is_transient());
    assert!(err.to_string().contains("secret not found"));
    // Not retried: one request.
    assert_eq!(requests(&server).await, 1);
    // A debug print never shows the token.
    assert!(!format!("{:?}", client(&server, None)).contains("skt_test"));
}

#[tokio::test]
async fn rate_limits_and_unavailability_are_retried_honouring_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(
            json!({"error": {"code": "rate_limited", "message": "slow down", "request_id": "r"}}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(secret(1, "a")))
        .mount(&server)
        .await;
    let started = Instant::now();
    let got = client(&server, None).read_secret("app/db", None).await.expect("retried");
    assert_eq!(got.version, 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(requests(&server).await, 2);

    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": "service_unavailable", "message": "storage is unavailable", "request_id": "r"}}),
        ))
        .mount(&down)
        .await;
    let err = client(&down, None).read_secret("app/db", None).await.expect_err("gives up");
    assert_eq!(err.code(), Some(ErrorCode::ServiceUnavailable));
    assert_eq!(requests(&down).await, 3, "one try and two retries");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let c = Client::builder(format!("http://{closed}"))
        .retries(1, Duration::from_millis(5))
        .build()
        .expect("client");
    assert!(matches!(c.health().await, Err(Error::Unreachable(_))));
    assert!(matches!(Client::builder("ftp://x").build(), Err(Error::Config(_))));
    assert!(matches!(Client::builder("http://x").token("bad token").build(), Err(Error::Config(_))));
}

#[tokio::test]
async fn paths_are_sent_segment_by_segment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/secrets/team%20a/db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(secret(3, "x")))
        .mount(&server)
        .await;
    assert_eq!(client(&server, None).read_secret("team a/db", None).await.expect("read").version, 3);
}

#[tokio::test]
async fn the_cache_serves_repeats_refreshes_after_its_ttl_and_shares_concurrent_misses() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(secret(1, "a")).set_delay(Duration::from_millis(200)),
        )
        .mount(&server)
        .await;
    let c = client(&server, Some(CacheConfig { ttl: Duration::from_millis(500), max_entries: 10 }));
    // Ten concurrent misses: one request.
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = c.clone();
        reads.spawn(async move { c.read_secret_cached("app/db").await.map(|s| s.version) });
    }
    while let Some(r) = reads.join_next().await {
        assert_eq!(r.expect("task").expect("read"), 1);
    }
    assert_eq!(requests(&server).await, 1);
    // Repeats within the TTL: no request.
    for _ in 0..5 {
        c.read_secret_cached("app/db").await.expect("cached");
    }
    assert_eq!(requests(&server).await, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.read_secret_cached("app/db").await.expect("refreshed");
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn a_failed_refresh_serves_the_stale_value_and_events_invalidate() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(secret(1, "first")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let c = client(&server, Some(CacheConfig { ttl: Duration::from_millis(100), max_entries: 10 }));
    assert_eq!(c.read_secret_cached("app/db").await.expect("read").data["password"], "first");
    // The server goes down (answers 503); after the TTL the stale value is served.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": "service_unavailable", "message": "down", "request_id": "r"}}),
        ))
        .mount(&server)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(c.read_secret_cached("app/db").await.expect("stale").data["password"], "first");
    // The server is back with version 2; an event for the path drops the entry at once.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(secret(2, "second")))
        .mount(&server)
        .await;
    let c = client(&server, Some(CacheConfig { ttl: Duration::from_secs(300), max_entries: 10 }));
    assert_eq!(c.read_secret_cached("app/db").await.expect("read").version, 2);
    let event =
        Event::new(EventType::SecretRotated, "tnt_default", Some("app/db".into()), json!({}), chrono_now())
            .expect("event");
    assert!(c.invalidate_for(&event));
    assert_eq!(c.cached_len(), 0);
    c.read_secret_cached("app/db").await.expect("read again");
    assert_eq!(requests(&server).await, 2, "the invalidated path was fetched again");
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[tokio::test]
async fn the_cache_holds_a_bounded_number_of_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(secret(1, "a")))
        .mount(&server)
        .await;
    let c = client(&server, Some(CacheConfig { ttl: Duration::from_secs(300), max_entries: 2 }));
    for p in ["a/1", "a/2", "a/3"] {
        c.read_secret_cached(p).await.expect("read");
    }
    assert_eq!(c.cached_len(), 2);
    // The least recently used (a/1) went: reading it asks again; a/3 does not.
    c.read_secret_cached("a/3").await.expect("cached");
    assert_eq!(requests(&server).await, 3);
    c.read_secret_cached("a/1").await.expect("refetched");
    assert_eq!(requests(&server).await, 4);
}

#[tokio::test]
async fn a_post_is_not_repeated_after_it_may_have_taken_effect() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": "service_unavailable", "message": "audit down", "request_id": "r"}}),
        ))
        .mount(&server)
        .await;
    let c = client(&server, None);
    let err = c.test_webhook("wh_x").await.expect_err("unavailable");
    assert_eq!(err.code(), Some(ErrorCode::ServiceUnavailable));
    assert_eq!(requests(&server).await, 1, "not retried");
    // A refused connection is retried even for a POST: nothing was sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let c = Client::builder(format!("http://{closed}"))
        .retries(2, Duration::from_millis(5))
        .build()
        .expect("client");
    assert!(matches!(c.test_webhook("wh_x").await, Err(Error::Unreachable(_))));
}
