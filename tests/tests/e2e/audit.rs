//! The audit trail of the real binary: the seed's history, denied reads, verification that catches
//! every kind of tampering done directly in the database, and fail-closed reads.

use std::process::Command;

use scaivault_e2e::{Api, Backend, Scratch, Storage, http_client, random_alnum, start_with_root};
use serde_json::{Value, json};

/// Runs one SQL statement against the server's storage, outside the server, as an attacker would.
fn sql(storage: &Storage, statement: &str) {
    let output = match storage.backend() {
        Backend::Sqlite => {
            let db = storage.data_dir().join("scaivault.db");
            let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=30)\nc.executescript(sys.argv[2])\nc.commit()\n";
            Command::new("python3").arg("-c").arg(script).arg(db).arg(statement).output()
        }
        Backend::Postgres => {
            let schema = storage.schema().expect("schema");
            Command::new("psql")
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("SET search_path TO {schema}; {statement}"))
                .output()
        }
    }
    .expect("run sql");
    assert!(output.status.success(), "{statement}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Writes, writes again, reads; returns the values written.
async fn activity(api: &Api) -> Vec<String> {
    let values: Vec<String> = (0..2).map(|_| format!("VALUE{}", random_alnum(24))).collect();
    for v in &values {
        let r = api.put_secret("integrations/salesforce/oauth", &json!({"data": {"client_secret": v}})).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }
    for _ in 0..2 {
        assert_eq!(api.get_secret("integrations/salesforce/oauth", None).await.status, 200);
    }
    values
}

async fn verify(api: &Api) -> Value {
    let r = api.get("/v1/audit/verify").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if scaivault_e2e::postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

#[tokio::test]
async fn the_trail_shows_writes_reads_and_denials_in_order() {
    for backend in backends() {
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (_server, root) = start_with_root(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &_server, &root);
        let values = activity(&api).await;
        // A token with the read scope but no policy: denied, and recorded as such.
        let r = api
            .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:nosy", "scopes": ["secrets:read"]}))
            .await;
        let nosy = api.with_token(r.body["token"].as_str().expect("token"));
        assert_eq!(nosy.get_secret("integrations/salesforce/oauth", None).await.status, 403);

        let r = api.get("/v1/audit/secrets/integrations/salesforce/oauth").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let trail: Vec<(String, Option<u64>, String, u64)> = r.body["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|l| {
                (
                    l["action"].as_str().expect("action").to_owned(),
                    l["version"].as_u64(),
                    l["outcome"].as_str().expect("outcome").to_owned(),
                    l["status_code"].as_u64().expect("status"),
                )
            })
            .collect();
        let s = |a: &str, v: Option<u64>, o: &str, c: u64| (a.to_owned(), v, o.to_owned(), c);
        assert_eq!(
            trail,
            vec![
                s("secret.write", Some(1), "success", 201),
                s("secret.write", Some(2), "success", 200),
                s("secret.read", Some(2), "success", 200),
                s("secret.read", Some(2), "success", 200),
                s("secret.read", None, "denied", 403),
            ],
            "{backend:?}"
        );
        let denied = &r.body["logs"][4];
        assert_eq!(denied["identity_id"], "sa:nosy");
        assert!(denied["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(denied["client_ip"].as_str().is_some_and(|ip| ip.starts_with("127.")));
        // Filters, and no value anywhere in the trail or the export.
        let r = api.get("/v1/audit?outcome=denied").await;
        assert_eq!(r.body["logs"].as_array().expect("logs").len(), 1);
        let r = api.get("/v1/audit?action=token.create").await;
        assert_eq!(r.body["logs"].as_array().expect("logs").len(), 1);
        let all = api.get("/v1/audit?limit=1000").await.text;
        let export = api.get("/v1/audit/export").await;
        assert_eq!(export.status, 200);
        let lines: Vec<Value> =
            export.text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        assert!(lines.len() >= 8, "{} lines", lines.len());
        assert!(lines.windows(2).all(|w| w[0]["timestamp"].as_str() <= w[1]["timestamp"].as_str()));
        for v in &values {
            assert!(
                !all.contains(v.as_str()) && !export.text.contains(v.as_str()),
                "{backend:?}: a value reached the audit log"
            );
        }
        assert!(!export.text.contains(&root), "the root token reached the audit log");
        let v = verify(&api).await;
        assert_eq!(v["valid"], true, "{backend:?}: {v}");
        assert!(v["checked"].as_u64().expect("checked") >= 8);
    }
}

#[tokio::test]
async fn verify_catches_edits_deletions_swaps_and_truncation() {
    let edits: [(&str, &str); 6] = [
        (
            "edited body",
            "UPDATE audit_log SET body = replace(body, 'secret.read', 'secret.list') WHERE seq = 3",
        ),
        ("edited index column", "UPDATE audit_log SET identity_id = 'someone-else' WHERE seq = 2"),
        ("deleted record", "DELETE FROM audit_log WHERE seq = 2"),
        (
            "swapped records",
            "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -1",
        ),
        ("truncated newest", "DELETE FROM audit_log WHERE seq >= 4"),
        ("removed signed head", "DELETE FROM audit_heads"),
    ];
    for backend in backends() {
        for (what, statement) in edits {
            let scratch = Scratch::new();
            let storage = backend.fresh(scratch.path()).expect("storage");
            let (server, root) = start_with_root(scratch.path(), &storage).await;
            let client = http_client();
            let api = Api::new(&client, &server, &root);
            activity(&api).await;
            assert_eq!(verify(&api).await["valid"], true);
            sql(&storage, statement);
            if what == "removed signed head" && backend == Backend::Postgres {
                // PostgreSQL's writers move the head only from the row they lock: with the row gone,
                // nothing more is recorded, so the tenant fails closed (verify included).
                let r = api.get("/v1/audit/verify").await;
                assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{what}: {}", r.text);
                continue;
            }
            let v = verify(&api).await;
            assert_eq!(v["valid"], false, "{backend:?} {what}: {v}");
            assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{backend:?} {what}: {v}");
            if what != "truncated newest" {
                assert!(v["first_invalid_id"].is_string(), "{backend:?} {what}: {v}");
            }
        }
    }
}

#[tokio::test]
async fn an_unwritable_audit_log_fails_reads_closed() {
    for backend in backends() {
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_with_root(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let values = activity(&api).await;
        match backend {
            Backend::Sqlite => sql(
                &storage,
                "CREATE TRIGGER audit_off BEFORE INSERT ON audit_log BEGIN SELECT RAISE(FAIL, 'audit disabled'); END;",
            ),
            Backend::Postgres => sql(
                &storage,
                "CREATE FUNCTION audit_off() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit disabled'; END $$; \
                 CREATE TRIGGER audit_off BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_off();",
            ),
        }
        let r = api.get_secret("integrations/salesforce/oauth", None).await;
        assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{backend:?}: {}", r.text);
        assert!(!r.text.contains(values[1].as_str()), "{backend:?}: the value left without an audit record");
        let r =
            api.put_secret("integrations/salesforce/oauth", &json!({"data": {"client_secret": "x"}})).await;
        assert_eq!(r.status, 503, "{backend:?}");
        // Many reads at once (so several batches are under way, and fail, together): no value.
        let reads = |n: usize| {
            let mut all = tokio::task::JoinSet::new();
            for _ in 0..n {
                let api = api.clone();
                all.spawn(async move { api.get_secret("integrations/salesforce/oauth", None).await });
            }
            async move { all.join_all().await }
        };
        for r in reads(16).await {
            assert_eq!(r.status, 503, "{backend:?}: {}", r.text);
            assert!(
                !r.text.contains(values[1].as_str()),
                "{backend:?}: the value left without an audit record"
            );
        }
        // Writable again: reads at once all succeed, and the chain is still one unbroken line.
        match backend {
            Backend::Sqlite => sql(&storage, "DROP TRIGGER audit_off;"),
            Backend::Postgres => sql(&storage, "DROP TRIGGER audit_off ON audit_log;"),
        }
        for _ in 0..3 {
            for r in reads(16).await {
                assert_eq!(r.status, 200, "{backend:?}: {}", r.text);
            }
        }
        let v = verify(&api).await;
        assert_eq!(v["valid"], true, "{backend:?}: {v}");
    }
}
