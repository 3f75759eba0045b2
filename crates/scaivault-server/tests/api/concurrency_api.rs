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

/// A proxy mount laid over a subtree while writes to it are under way: either a write lands first
/// and the mount is refused, or the mount lands first and the writes are refused. Never both: a
/// local secret under a proxy mount would be hidden from every read, yet live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mount_and_writes_below_it_never_both_land() {
    for (store, app) in both_stores().await {
        let app = Arc::new(app);
        let (mut mounted, mut refused) = (0, 0);
        for round in 0..16u64 {
            let mount = format!("race{round}");
            // Writes spread over a few milliseconds, starting a little before or after the mount,
            // so that it meets them in every stage.
            let writes: Vec<_> = (0..12u64)
                .map(|i| {
                    let (app, path) = (app.clone(), format!("{mount}/k{i}"));
                    let after = std::time::Duration::from_micros(1500 * (round % 4) + 250 * i);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        app.put(&path, json!({"data": {"v": "x"}})).await
                    })
                })
                .collect();
            let backend = json!({
                "name": format!("vault-{round}"),
                "type": "hashicorp_vault",
                "mode": "proxy",
                "mount": mount,
                "connection": {"address": "http://127.0.0.1:9", "auth_method": "approle",
                               "credentials_path": "infra/federation/vault-approle"},
                "path_mapping": [{"source": format!("{mount}/**"), "target": "secret/data/**"}],
            });
            let created = app.root("POST", "/v1/federation/backends", Some(backend)).await;
            for w in writes {
                let r = w.await.expect("join");
                assert!(r.status.is_success() || r.status == StatusCode::CONFLICT, "{store}: {:?}", r.body);
            }
            let query = scaivault_store::SecretListQuery {
                prefix: Some(&format!("{mount}/")),
                tag: None,
                after: None,
                limit: 100,
            };
            let local = app.store.list_secrets(scaivault_store::DEFAULT_TENANT, query).await.expect("list");
            let local: Vec<_> = local.iter().map(|s| s.path.as_str()).collect();
            match created.status {
                StatusCode::CREATED => {
                    mounted += 1;
                    assert!(local.is_empty(), "{store}: local secrets under a proxy mount: {local:?}");
                }
                StatusCode::CONFLICT => refused += 1,
                other => panic!("{store}: unexpected {other}: {:?}", created.body),
            }
        }
        eprintln!("{store}: {mounted} mounts landed, {refused} refused over a write");
        assert!(mounted > 0, "{store}: no mount landed, so nothing was checked");
    }
}
