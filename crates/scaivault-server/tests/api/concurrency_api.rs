//! Concurrent writers through the HTTP surface, on every store.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;
use common::both_stores;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_writers_get_versions_one_to_n() {
    for (store, app) in both_stores().await {
        let app = Arc::new(app);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.put("hot/secret", json!({"data": {"writer": i.to_string()}})).await
                })
            })
            .collect();
        let mut versions = BTreeSet::new();
        let mut created = 0;
        for t in tasks {
            let r = t.await.expect("join");
            assert!(r.status.is_success(), "{store}: {:?}", r.body);
            created += usize::from(r.status == StatusCode::CREATED);
            assert!(
                versions.insert(r.body["version"].as_u64().expect("version")),
                "{store}: duplicate version"
            );
        }
        assert_eq!(versions, (1..=32).collect::<BTreeSet<u64>>(), "{store}");
        assert_eq!(created, 1, "{store}: exactly one write creates the secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_check_and_set_lets_exactly_one_win() {
    for (store, app) in both_stores().await {
        let app = Arc::new(app);
        app.put("cas/secret", json!({"data": {"v": "0"}})).await;
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.put("cas/secret", json!({"data": {"v": i.to_string()}, "cas": 1})).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let r = t.await.expect("join");
            match r.status {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => assert_eq!(r.code(), "conflict", "{store}"),
                other => panic!("{store}: unexpected {other}: {:?}", r.body),
            }
        }
        assert_eq!(ok, 1, "{store}");
        let r = app.root("GET", "/v1/secrets/cas/secret/versions", None).await;
        assert_eq!(r.body["current_version"], 2, "{store}");
    }
}
