//! The secrets routes over HTTP semantics: status codes, error envelope, validation that stores
//! nothing, versions, check-and-set, delete/undelete/destroy, listing.

use crate::common;

use axum::http::StatusCode;
use common::app;
use serde_json::json;

#[tokio::test]
async fn first_write_is_201_later_200_and_reads_back() {
    let app = app().await;
    let body = json!({"data": {"client_id": "3MVG9", "client_secret": "s3cr3t"}, "secret_type": "json",
        "metadata": {"description": "Salesforce", "tags": ["salesforce", "oauth"]}, "options": {"max_versions": 10}});
    let r = app.put("integrations/salesforce/oauth", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["path"], "integrations/salesforce/oauth");
    assert_eq!(r.body["metadata"]["tags"], json!(["salesforce", "oauth"]));
    assert!(r.body.get("data").is_none(), "write responses never echo data");
    let r = app.put("integrations/salesforce/oauth", body).await;
    assert_eq!((r.status, r.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let r = app.root("GET", "/v1/secrets/integrations/salesforce/oauth", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["client_secret"], "s3cr3t");
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["created_by"], "user:root");
    assert_eq!(r.body["expires_at"], json!(null));
    let r = app.root("GET", "/v1/secrets/integrations/salesforce/oauth?version=1", None).await;
    assert_eq!((r.status, r.body["version"].as_u64()), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn bad_paths_are_invalid_path_and_store_nothing() {
    let app = app().await;
    let seg = "s".repeat(128);
    let long = format!("{seg}/{seg}/{seg}/{}", "t".repeat(126));
    assert_eq!(long.len(), 513);
    let bad = [
        "..",
        ".",
        "a/../b",
        "a/./b",
        "a//b",
        "%2Fa",
        "a%2Fb",
        "/a",
        "a/",
        "caf%C3%A9",
        "a%20b",
        "a/b/versions",
        "x/metadata",
        "x/rotate",
        "p/",
        "x/undelete",
        "x/destroy",
        "a\\b",
        "a~b",
        "a:b",
        long.as_str(),
    ];
    for raw in bad {
        let uri = format!("/v1/secrets/{raw}");
        let r = app.put(raw, json!({"data": {"k": "v"}})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "PUT {uri}: {:?}",
            r.body
        );
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("path")));
    }
    for raw in ["..", "a//b", "a%2Fb", "a/", "caf%C3%A9"] {
        let r = app.root("GET", &format!("/v1/secrets/{raw}"), None).await;
        assert_eq!(r.code(), "invalid_path", "GET {raw}");
        let r = app.root("DELETE", &format!("/v1/secrets/{raw}"), None).await;
        assert_eq!(r.code(), "invalid_path", "DELETE {raw}");
    }
    assert_eq!(app.secret_count().await, 0);
    // Reserved words are fine inside a path, and exactly 512 bytes is fine.
    assert_eq!(app.put("versions/a", json!({"data": {"k": "v"}})).await.status, StatusCode::CREATED);
    let max = format!("{seg}/{seg}/{seg}/{}", "t".repeat(125));
    assert_eq!(max.len(), 512);
    assert_eq!(app.put(&max, json!({"data": {"k": "v"}})).await.status, StatusCode::CREATED);
    let r = app.put(&vec!["a"; 33].join("/"), json!({"data": {"k": "v"}})).await;
    assert_eq!(r.code(), "invalid_path", "33 segments");
}

#[tokio::test]
async fn bad_bodies_are_refused_and_store_nothing() {
    let app = app().await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (b"".to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (br#"{"metadata": {}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (br#"{"data": "hunter2"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (br#"{"data": {}, "cas": "hunter2"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (br#"{"data": {"a": 1}, "secret_type": "kv"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            br#"{"data": {"a": "b"}, "secret_type": "nope"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            br#"{"data": {"a": "b"}, "options": {"max_versions": 0}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            br#"{"data": {"a": "b"}, "options": {"max_versions": 1001}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (br#"{"data": {"a": "b"}, "surprise": 1}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        // Anything after the one JSON value: the body is malformed, not stored up to the junk.
        (br#"{"data": {"a": "hunter2"}}]]}not json"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
        (br#"{"data": {"a": "hunter2"}} {"data": {}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let r = app.send("PUT", "/v1/secrets/app/x", Some(&app.root.clone()), Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (status, code), "{}", String::from_utf8_lossy(&body));
        let message = r.body["error"]["message"].as_str().expect("message");
        assert!(!message.contains("hunter2"), "error echoed a value: {message}");
    }
    let missing = app.send("PUT", "/v1/secrets/app/x", Some(&app.root.clone()), Some(b"{}".to_vec())).await;
    assert!(missing.body["error"]["message"].as_str().is_some_and(|m| m.contains("data")));
    // Over the 1 MiB body limit.
    let huge = format!(r#"{{"data": {{"k": "{}"}}}}"#, "x".repeat(2 * 1024 * 1024));
    let r = app.send("PUT", "/v1/secrets/app/x", Some(&app.root.clone()), Some(huge.into_bytes())).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    // Under the body limit but over the 512 KiB data limit.
    let big = json!({"data": {"k": "y".repeat(600 * 1024)}});
    let r = app.put("app/x", big).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    assert_eq!(app.secret_count().await, 0);
    let r = app.root("GET", "/v1/secrets/app/x?version=abc", None).await;
    assert_eq!(r.code(), "invalid_request");
    let r = app.root("GET", "/v1/secrets/app/x?version=0", None).await;
    assert_eq!(r.code(), "invalid_request");
}

/// A misspelt query parameter is refused, not ignored: `?versoin=1` must not quietly read the
/// current version instead of version 1.
#[tokio::test]
async fn unknown_query_parameters_are_refused() {
    let app = app().await;
    app.put("q/x", json!({"data": {"v": "1"}})).await;
    app.put("q/x", json!({"data": {"v": "2"}})).await;
    for uri in [
        "/v1/secrets/q/x?versoin=1",
        "/v1/secrets?prefx=q/",
        "/v1/secrets?prefix=q/&page=2",
        "/v1/audit?identity=root",
        "/v1/audit/secrets/q/x?limt=1",
        "/v1/audit/export?since=2026-01-01T00:00:00Z",
        "/v1/policies?offset=10",
        "/v1/auth/tokens?limit=1&all=true",
    ] {
        let r = app.root("GET", uri, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{uri}: {:?}", r.body);
    }
    let r = app.root("GET", "/v1/secrets/q/x?version=1", None).await;
    assert_eq!(r.body["data"]["v"], "1");
    let r = app.root("GET", "/v1/secrets?prefix=q/&limit=5", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn metadata_over_its_limits_is_refused_and_changes_nothing() {
    let app = app().await;
    let long = "hunter2".repeat(200);
    let bad = [
        json!({"description": long}),
        json!({"tags": vec!["t"; 65]}),
        json!({"tags": [""]}),
        json!({"tags": ["a\nb"]}),
        json!({"tags": [long.clone()]}),
        json!({"owner": long.clone()}),
        json!({"custom": {"k": long.clone() }}),
        json!({"custom": {long.clone(): "v"}}),
        json!({"custom": (0..65).map(|i| (i.to_string(), json!("v"))).collect::<serde_json::Map<_, _>>()}),
    ];
    for metadata in &bad {
        let r = app.put("m/x", json!({"data": {"k": "v"}, "metadata": metadata})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{metadata}");
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains("hunter2"), "the error repeats the text: {raw}");
    }
    assert_eq!(app.secret_count().await, 0, "a refused write stores nothing");
    let kept = json!({"description": "kept", "tags": ["t"], "owner": "team:x", "custom": {"k": "v"}});
    let r = app.put("m/x", json!({"data": {"k": "v"}, "metadata": kept})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for metadata in &bad {
        let r = app.root("PATCH", "/v1/secrets/m/x/metadata", Some(metadata.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{metadata}");
    }
    let r = app.root("GET", "/v1/secrets/m/x", None).await;
    assert_eq!(r.body["metadata"], kept);
    assert_eq!(r.body["version"], 1);
}

#[tokio::test]
async fn cas_and_version_errors() {
    let app = app().await;
    assert_eq!(app.put("db/pw", json!({"data": {"p": "1"}, "cas": 0})).await.status, StatusCode::CREATED);
    let r = app.put("db/pw", json!({"data": {"p": "2"}, "cas": 0})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    let r = app.put("db/pw", json!({"data": {"p": "2"}, "cas": 5})).await;
    assert_eq!(r.code(), "conflict");
    assert_eq!(app.put("db/pw", json!({"data": {"p": "2"}, "cas": 1})).await.status, StatusCode::OK);
    let r = app.root("GET", "/v1/secrets/db/pw?version=7", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "version_not_found"));
    let r = app.root("GET", "/v1/secrets/db/none", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "secret_not_found"));
    for huge in ["9223372036854775807", "9223372036854775808", "18446744073709551615"] {
        let r = app.root("GET", &format!("/v1/secrets/db/pw?version={huge}"), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "version_not_found"), "{huge}");
    }
}

#[tokio::test]
async fn pruning_versions_listing_and_metadata() {
    let app = app().await;
    for i in 1..=4 {
        app.put("p/x", json!({"data": {"v": i.to_string()}, "options": {"max_versions": 2}})).await;
    }
    let r = app.root("GET", "/v1/secrets/p/x?version=2", None).await;
    assert_eq!(r.code(), "version_not_found");
    let r = app.root("GET", "/v1/secrets/p/x/versions", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["current_version"], 4);
    let versions: Vec<_> =
        r.body["versions"].as_array().expect("versions").iter().map(|v| v["version"].clone()).collect();
    assert_eq!(versions, vec![json!(4), json!(3)]);
    assert_eq!(r.body["versions"][0]["is_current"], true);
    assert_eq!(r.body["versions"][0]["state"], "active");
    assert_eq!(r.body["next_cursor"], json!(null));
    // Paged like every list: newest first, the cursor continuing below the last version shown.
    let r = app.root("GET", "/v1/secrets/p/x/versions?limit=1", None).await;
    assert_eq!(r.body["versions"][0]["version"], 4);
    let cursor = r.body["next_cursor"].as_str().expect("a cursor").to_owned();
    let r = app.root("GET", &format!("/v1/secrets/p/x/versions?limit=1&cursor={cursor}"), None).await;
    assert_eq!((r.body["versions"][0]["version"].as_u64(), &r.body["next_cursor"]), (Some(3), &json!(null)));
    for bad in [
        "/v1/secrets/p/x/versions?version=3",
        "/v1/secrets/p/x?limit=1",
        "/v1/secrets/p/x/versions?cursor=%%",
    ] {
        let r = app.root("GET", bad, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{bad}");
    }
    let r =
        app.root("PATCH", "/v1/secrets/p/x/metadata", Some(json!({"tags": ["t1"], "owner": "team:x"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["tags"], json!(["t1"]));
    let r = app.root("GET", "/v1/secrets/p/x", None).await;
    assert_eq!(r.body["metadata"]["owner"], "team:x");
    let r = app.root("PATCH", "/v1/secrets/p/x", Some(json!({"tags": []}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_undelete_destroy() {
    let app = app().await;
    app.put("d/x", json!({"data": {"v": "1"}})).await;
    app.put("d/x", json!({"data": {"v": "2"}})).await;
    assert_eq!(app.root("DELETE", "/v1/secrets/d/x", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.root("GET", "/v1/secrets/d/x", None).await.code(), "secret_not_found");
    assert_eq!(app.secret_count().await, 0);
    assert_eq!(app.root("DELETE", "/v1/secrets/d/x", None).await.code(), "secret_not_found");
    let r = app.root("POST", "/v1/secrets/d/x/undelete", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(app.root("GET", "/v1/secrets/d/x?version=1", None).await.body["data"]["v"], "1");
    // `null` is not "all": an unset variable in a client must not erase the whole history.
    let r = app.root("POST", "/v1/secrets/d/x/destroy", Some(json!({"versions": null}))).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{:?}", r.body);
    assert_eq!(app.root("GET", "/v1/secrets/d/x?version=1", None).await.body["data"]["v"], "1");
    let r = app.root("POST", "/v1/secrets/d/x/destroy", Some(json!({"versions": [1]}))).await;
    assert_eq!(r.body["destroyed_versions"], json!([1]));
    assert_eq!(app.root("GET", "/v1/secrets/d/x?version=1", None).await.code(), "version_not_found");
    let r = app.root("GET", "/v1/secrets/d/x/versions", None).await;
    assert_eq!(r.body["versions"][1]["state"], "destroyed");
    let r = app.root("POST", "/v1/secrets/d/x/destroy", None).await;
    assert_eq!(r.body["destroyed_versions"], json!([2]));
    assert_eq!(app.root("GET", "/v1/secrets/d/x", None).await.code(), "version_not_found");
    let r = app.root("POST", "/v1/secrets/d/x/rotate", None).await;
    assert_eq!(r.code(), "invalid_request");
    let r = app.root("POST", "/v1/secrets/d/x/explode", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_pages_with_prefix_and_tag() {
    let app = app().await;
    for i in 0..7 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        app.put(&format!("svc/s{i}"), json!({"data": {"v": "x"}, "metadata": {"tags": [tag]}})).await;
    }
    app.put("other/x", json!({"data": {"v": "x"}})).await;
    let mut seen = Vec::new();
    let mut uri = "/v1/secrets?prefix=svc/&limit=3".to_owned();
    loop {
        let r = app.root("GET", &uri, None).await;
        assert_eq!(r.status, StatusCode::OK);
        for s in r.body["secrets"].as_array().expect("secrets") {
            assert!(s.get("data").is_none(), "lists never carry values");
            seen.push(s["path"].as_str().expect("path").to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/secrets?prefix=svc/&limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("svc/s{i}")).collect::<Vec<_>>());
    let r = app.root("GET", "/v1/secrets?tag=odd", None).await;
    assert_eq!(r.body["secrets"].as_array().expect("secrets").len(), 3);
    assert_eq!(app.root("GET", "/v1/secrets?limit=0", None).await.code(), "invalid_request");
    assert_eq!(app.root("GET", "/v1/secrets?limit=1001", None).await.code(), "invalid_request");
    assert_eq!(app.root("GET", "/v1/secrets?cursor=!!!", None).await.code(), "invalid_request");
}

#[tokio::test]
async fn request_ids_are_echoed_and_in_error_bodies() {
    let app = app().await;
    let req = axum::http::Request::builder()
        .uri("/v1/secrets/none/here")
        .header("authorization", format!("Bearer {}", app.root))
        .header("x-request-id", "trace-abc-123")
        .body(axum::body::Body::empty())
        .expect("request");
    let r = app.send_request(req).await;
    assert_eq!(r.headers["x-request-id"], "trace-abc-123");
    assert_eq!(r.body["error"]["request_id"], "trace-abc-123");
    let r = app.root("GET", "/v1/secrets/none/here", None).await;
    let generated = r.headers["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(generated.starts_with("req_"));
    assert_eq!(r.body["error"]["request_id"], generated.as_str());
    let r = app.send("GET", "/v1/health", None, None).await;
    assert!(r.headers.contains_key("x-request-id"));
    let r = app.root("GET", "/v1/nothing", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

/// Numbers come back as they were written: integers beyond 64 bits, exponents, `-0` and long
/// fractions keep their JSON text (a port stays `5432`, an account id is not rounded to a float).
/// The one normalisation: an exponent's sign is written out (`1e2` comes back `1e+2`).
#[tokio::test]
async fn numbers_in_data_keep_their_text() {
    let app = app().await;
    let numbers = [
        ("big", "123456789012345678901234567890"),
        ("negative_big", "-98765432109876543210"),
        ("u64_max", "18446744073709551615"),
        ("exponent", "1e+2"),
        ("negative_zero", "-0"),
        ("fraction", "0.10000000000000000000000001"),
        ("port", "5432"),
    ];
    let fields: Vec<String> = numbers.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let body = format!("{{\"data\":{{{}}}}}", fields.join(","));
    let r = app.send("PUT", "/v1/secrets/n/numbers", Some(&app.root.clone()), Some(body.into_bytes())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app.root("GET", "/v1/secrets/n/numbers", None).await;
    let text = String::from_utf8_lossy(&r.raw).into_owned();
    for (k, v) in numbers {
        assert!(text.contains(&format!("\"{k}\":{v}")), "{k}: {v} came back otherwise: {text}");
    }
}

/// Events tell what changed: undeleting a live secret sends nothing, a destroy names the versions
/// it erased (not the ones asked for), and a destroy that erased nothing sends nothing.
#[tokio::test]
async fn undelete_and_destroy_announce_only_what_they_changed() {
    let app = app().await;
    app.put("ev/x", json!({"data": {"v": "1"}})).await;
    app.put("ev/x", json!({"data": {"v": "2"}})).await;
    let events = || async {
        let all = app.store.events_after(0, 1000).await.expect("events");
        all.into_iter()
            .filter(|e| {
                e.event_type != "secret.created"
                    && !(e.event_type == "secret.updated" && e.body.contains("\"version\""))
            })
            .map(|e| {
                let body: serde_json::Value = serde_json::from_str(&e.body).expect("json");
                (e.event_type, body["data"].clone())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(app.root("POST", "/v1/secrets/ev/x/undelete", None).await.status, StatusCode::OK);
    let r = app.root("POST", "/v1/secrets/ev/x/destroy", Some(json!({"versions": [1, 99]}))).await;
    assert_eq!(r.body["destroyed_versions"], json!([1]), "{:?}", r.body);
    let r = app.root("POST", "/v1/secrets/ev/x/destroy", Some(json!({"versions": [1, 99]}))).await;
    assert_eq!(r.body["destroyed_versions"], json!([]), "{:?}", r.body);
    assert_eq!(events().await, [("secret.deleted".to_owned(), json!({"destroyed_versions": [1]}))]);
}

/// A write without a type that revives a soft-deleted secret is checked against the type the
/// secret keeps: a deleted `kv` secret does not come back holding a number.
#[tokio::test]
async fn a_revived_secret_keeps_its_types_rules() {
    let app = app().await;
    let r = app.put("typed/x", json!({"data": {"k": "v"}, "secret_type": "kv"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(app.root("DELETE", "/v1/secrets/typed/x", None).await.status, StatusCode::NO_CONTENT);
    let r = app.put("typed/x", json!({"data": {"n": 1}})).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{:?}", r.body);
    assert_eq!(
        app.root("GET", "/v1/secrets/typed/x", None).await.code(),
        "secret_not_found",
        "nothing revived"
    );
    let r = app.put("typed/x", json!({"data": {"k": "w"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["secret_type"], "kv");
}
