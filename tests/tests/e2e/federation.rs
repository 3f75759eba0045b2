//! Federation with the real binary in front of a real OpenBao dev server: a proxy-mode backend
//! configured as SPEC section 8 shows it (AppRole credential kept in ScaiVault), live reads with
//! versions and custom metadata, writes refused, policies on the ScaiVault path, the audit trail,
//! status, and a backend that stops answering; and sync mode: history pulled into local storage,
//! reads served while the backend is down, write-through, conflicts settled or flagged, and the
//! sync events. On SQLite and, when configured, PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::Method;
use scaivault_e2e::{
    Api, Backend, Scratch, ServerCommand, ServerProcess, Storage, http_client, leaks_in, random_alnum,
    start_with_root,
};
use scaivault_federation::testing::{MotoServer, OpenBaoDev};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MOUNT: &str = "external/hashicorp";
const PASSWORD: &str = "external/hashicorp/app/db/password";

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if scaivault_e2e::postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

/// An AppRole that may read `secret/data/app/*` only; answers its role_id and secret_id.
async fn approle(bao: &OpenBaoDev) -> (String, String) {
    bao.call(Method::POST, "sys/auth/approle", json!({"type": "approle"})).await;
    bao.call(
        Method::PUT,
        "sys/policies/acl/scaivault",
        json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
    bao.call(Method::POST, "auth/approle/role/scaivault", json!({"token_policies": ["scaivault"]})).await;
    let role = bao.call(Method::GET, "auth/approle/role/scaivault/role-id", json!({})).await;
    let secret = bao.call(Method::POST, "auth/approle/role/scaivault/secret-id", json!({})).await;
    (
        role["data"]["role_id"].as_str().expect("role_id").to_owned(),
        secret["data"]["secret_id"].as_str().expect("secret_id").to_owned(),
    )
}

fn backend_config(address: &str) -> Value {
    json!({
        "name": "hashicorp-prod",
        "type": "hashicorp_vault",
        "mode": "proxy",
        "mount": MOUNT,
        "connection": {
            "address": address,
            "namespace": null,
            "auth_method": "approle",
            "credentials_path": "infra/federation/vault-approle",
            "ca_cert_path": null
        },
        "path_mapping": [{"source": "external/hashicorp/**", "target": "secret/data/**"}],
        "sync_interval": "5m",
        "write_through": false,
        "conflict_resolution": "backend_wins"
    })
}

/// Signs in with the Vault token kept at `infra/federation/vault-token`.
fn token_auth(config: &mut Value) {
    config["connection"]["auth_method"] = json!("token");
    config["connection"]["credentials_path"] = json!("infra/federation/vault-token");
}

#[tokio::test]
async fn a_proxy_backend_serves_live_reads_and_refuses_writes() {
    for backend in backends() {
        let Some(mut bao) = OpenBaoDev::start().await else { return };
        let (role_id, secret_id) = approle(&bao).await;
        let first = random_alnum(24);
        let second = random_alnum(24);
        for value in [&first, &second] {
            bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": value}})).await;
        }
        bao.call(
            Method::POST,
            "secret/metadata/app/db/password",
            json!({"custom_metadata": {"owner": "platform"}}),
        )
        .await;
        bao.call(Method::POST, "secret/data/other/key", json!({"data": {"key": "outside"}})).await;

        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_with_root(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);

        // The credential first, as an ordinary secret; then the backend that names it.
        let r = api
            .put_secret(
                "infra/federation/vault-approle",
                &json!({"data": {"role_id": role_id, "secret_id": secret_id}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = api.post("/v1/federation/backends", &backend_config(bao.address())).await;
        assert_eq!(r.status, 201, "{backend:?}: {}", r.text);
        let id = r.body["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("fed_"), "{id}");
        assert_eq!(r.body["connection"]["credentials_path"], "infra/federation/vault-approle");
        assert!(!r.text.contains(&secret_id), "the credential never appears in the configuration");
        let r = api.post("/v1/federation/backends", &backend_config(bao.address())).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "same name and mount: {}", r.text);
        let mut nested = backend_config(bao.address());
        nested["name"] = json!("nested");
        nested["mount"] = json!("external/hashicorp/app");
        nested["path_mapping"] = json!([{"source": "external/hashicorp/app/**", "target": "secret/data/**"}]);
        let r = api.post("/v1/federation/backends", &nested).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "overlapping mount: {}", r.text);

        // Reads are forwarded live: the current version, a named one, and the custom metadata.
        let r = api.get_secret(PASSWORD, None).await;
        assert_eq!(r.status, 200, "{backend:?}: {}", r.text);
        assert_eq!(r.body["data"]["password"], second.as_str());
        assert_eq!((r.body["version"].as_u64(), r.body["path"].as_str()), (Some(2), Some(PASSWORD)));
        assert_eq!(r.body["metadata"]["custom"]["owner"], "platform");
        assert_eq!(r.body["created_by"], format!("federation:{id}"));
        let r = api.get_secret(PASSWORD, Some(1)).await;
        assert_eq!(r.body["data"]["password"], first.as_str(), "{}", r.text);
        let r = api.get_secret(PASSWORD, Some(7)).await;
        assert_eq!((r.status, r.code()), (404, "version_not_found"), "{}", r.text);
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "third"}})).await;
        assert_eq!(
            api.get_secret(PASSWORD, None).await.body["data"]["password"],
            "third",
            "nothing is cached"
        );
        let r = api.get_secret("external/hashicorp/app/missing", None).await;
        assert_eq!((r.status, r.code()), (404, "secret_not_found"), "{}", r.text);
        // Outside the AppRole's Vault policy: the backend refuses ScaiVault.
        let r = api.get_secret("external/hashicorp/other/key", None).await;
        assert_eq!((r.status, r.code()), (502, "backend_error"), "{}", r.text);

        // Writes under the mount are refused; the backend is authoritative.
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "local"}})).await;
        assert_eq!((r.status, r.code()), (409, "read_only_path"), "{}", r.text);
        let r = api.send(Method::DELETE, &format!("/v1/secrets/{PASSWORD}"), None).await;
        assert_eq!((r.status, r.code()), (409, "read_only_path"), "{}", r.text);

        // The caller's policies apply to the ScaiVault path, before the backend is asked.
        let r = api
            .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:nosy", "scopes": ["secrets:read"]}))
            .await;
        let nosy = api.with_token(r.body["token"].as_str().expect("token"));
        let r = nosy.get_secret(PASSWORD, None).await;
        assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
        let r = nosy.get("/v1/federation/backends").await;
        assert_eq!((r.status, r.code()), (403, "access_denied"), "federation:read is needed: {}", r.text);

        // The trail: reads of the federated path, the denied one, and the credential opened once.
        let r = api.get(&format!("/v1/audit/secrets/{PASSWORD}")).await;
        let outcomes: Vec<(&str, &str)> = r.body["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .map(|l| (l["action"].as_str().unwrap_or_default(), l["outcome"].as_str().unwrap_or_default()))
            .collect();
        assert!(outcomes.contains(&("secret.read", "success")), "{outcomes:?}");
        assert!(outcomes.contains(&("secret.read", "denied")), "{outcomes:?}");
        let r = api.get("/v1/audit/secrets/infra/federation/vault-approle").await;
        let opened: Vec<&Value> = r.body["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter(|l| l["action"] == "federation.credential.read")
            .collect();
        assert_eq!(opened.len(), 1, "opened once, then reused: {}", r.text);
        assert_eq!(opened[0]["identity_id"], "federation");
        // Neither the audit export nor the server's log carries a value or the credential.
        let export = api.get("/v1/audit/export").await;
        let watched =
            [("first", first.as_bytes()), ("second", second.as_bytes()), ("secret_id", secret_id.as_bytes())];
        let leaks = leaks_in(export.text.as_bytes(), &watched);
        assert!(leaks.is_empty(), "{leaks:?}");
        let leaks = leaks_in(format!("{}{}", server.stdout(), server.stderr()).as_bytes(), &watched);
        assert!(leaks.is_empty(), "{leaks:?}");

        // Status asks the backend now; list and PATCH work; a stopped backend is unreachable.
        let r = api.get(&format!("/v1/federation/backends/{id}/status")).await;
        assert_eq!((r.status, r.body["state"].as_str()), (200, Some("healthy")), "{}", r.text);
        assert!(r.body["latency_ms"].is_u64(), "{}", r.text);
        let r = api.get("/v1/federation/backends").await;
        assert_eq!(r.body["backends"][0]["id"], id.as_str(), "{}", r.text);
        let r = api
            .send(
                Method::PATCH,
                &format!("/v1/federation/backends/{id}"),
                Some(json!({"path_mapping": [{"source": "external/hashicorp/db/*", "target": "secret/data/app/db/*"}]}).to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = api.get_secret("external/hashicorp/db/password", None).await;
        assert_eq!(r.body["data"]["password"], "third", "the new mapping serves at once: {}", r.text);
        let r = api.get_secret(PASSWORD, None).await;
        assert_eq!((r.status, r.code()), (400, "invalid_path"), "no rule maps it any more: {}", r.text);
        bao.stop();
        let r = api.get_secret("external/hashicorp/db/password", None).await;
        assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{}", r.text);
        let r = api.get(&format!("/v1/federation/backends/{id}/status")).await;
        assert_eq!(r.body["state"], "unreachable", "{}", r.text);
        assert!(r.body["last_error"].is_string(), "{}", r.text);

        // Deleted: the mount is an ordinary, empty part of the tree again.
        let r = api.send(Method::DELETE, &format!("/v1/federation/backends/{id}"), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let r = api.get_secret("external/hashicorp/db/password", None).await;
        assert_eq!((r.status, r.code()), (404, "secret_not_found"), "{}", r.text);
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "now-local"}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        drop(server);
    }
}

/// A policy `name` allowing `permission` on `pattern`, bound to the service account `identity`.
async fn grant(api: &Api, name: &str, pattern: &str, permission: &str, identity: &str) {
    let rule = json!({"name": name, "rules": [{"path_pattern": pattern, "permissions": [permission]}]});
    let r = api.post("/v1/policies", &rule).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy id").to_owned();
    let binding = json!({"identity_type": "service_account", "identity_id": identity});
    let r = api.post(&format!("/v1/policies/{policy}/bindings"), &binding).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn configurations_this_server_cannot_serve_are_refused_clearly() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let base = backend_config("http://127.0.0.1:1");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(&|v| {
                v["type"] = json!("azure_key_vault");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
            }),
            "invalid_request",
            "vault_url",
        ),
        (
            with(&|v| {
                v["type"] = json!("azure_key_vault");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
                v["connection"] = json!({"vault_url": "https://kv1.vault.azure.net", "tenant_id": "t1",
                    "auth_method": "password", "credentials_path": "a/b"});
            }),
            "invalid_request",
            "is not one of client_secret, certificate, managed_identity",
        ),
        (
            with(&|v| {
                v["type"] = json!("azure_key_vault");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
                v["connection"] = json!({"vault_url": "https://kv1.vault.azure.net", "tenant_id": "t1",
                    "auth_method": "managed_identity"});
            }),
            "invalid_request",
            "--federation-ambient-identity",
        ),
        (
            with(&|v| {
                v["type"] = json!("azure_key_vault");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
                v["connection"] = json!({"vault_url": "https://kv1.vault.azure.net/secrets", "tenant_id": "t1",
                    "credentials_path": "a/b"});
            }),
            "invalid_request",
            "vault_url",
        ),
        (
            with(&|v| {
                v["type"] = json!("gcp_secret_manager");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
            }),
            "invalid_request",
            "project_id",
        ),
        (
            with(&|v| {
                v["type"] = json!("gcp_secret_manager");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
                v["connection"] = json!({"project_id": "p1", "auth_method": "workload_identity"});
            }),
            "invalid_request",
            "--federation-ambient-identity",
        ),
        (
            with(&|v| {
                v["type"] = json!("gcp_secret_manager");
                v["path_mapping"] = json!([{"source": "external/hashicorp/*", "target": "*"}]);
                v["connection"] = json!({"project_id": "p1", "credentials_path": "a/b", "authority_host": "https://login.example/"});
            }),
            "invalid_request",
            "connection.authority_host: does not apply to gcp_secret_manager",
        ),
        (
            with(&|v| v["connection"]["auth_method"] = json!("userpass")),
            "invalid_request",
            "'userpass' is not one of token, approle, kubernetes, aws, gcp",
        ),
        (with(&|v| v["type"] = json!("aws_secrets_manager")), "invalid_request", "region"),
        (
            with(&|v| {
                v["type"] = json!("aws_secrets_manager");
                v["connection"] = json!({"region": "us-east-1", "role_arn": "arn:aws:iam::1:user/x", "credentials_path": "a/b"});
            }),
            "invalid_request",
            "is not a role's ARN",
        ),
        (
            with(&|v| {
                v["type"] = json!("aws_secrets_manager");
                v["connection"] =
                    json!({"region": "us-east-1", "external_id": "tenant-42", "credentials_path": "a/b"});
            }),
            "invalid_request",
            "connection.external_id: is sent when assuming a role: it needs role_arn",
        ),
        (
            with(&|v| {
                v["type"] = json!("aws_secrets_manager");
                v["connection"] = json!({"region": "us-east-1", "role_arn": "arn:aws:iam::1:role/x",
                    "external_id": "no spaces please", "credentials_path": "a/b"});
            }),
            "invalid_request",
            "external_id must be",
        ),
        (
            with(&|v| {
                v["type"] = json!("aws_secrets_manager");
                v["connection"] = json!({"region": "us-east-1", "role_arn": "arn:aws:iam::1:role/x"});
            }),
            "invalid_request",
            "connection.role_arn: without credentials_path is assumed as the server's own AWS identity",
        ),
        (
            with(&|v| {
                v["type"] = json!("aws_secrets_manager");
                v["connection"] =
                    json!({"region": "us-east-1", "endpoint": "http://h/x", "credentials_path": "a/b"});
            }),
            "invalid_request",
            "endpoint",
        ),
        (with(&|v| v["type"] = json!("consul")), "invalid_request", "type"),
        (
            with(&|v| {
                v["mode"] = json!("sync");
                v["conflict_resolution"] = json!("local_wins");
            }),
            "invalid_request",
            "write_through",
        ),
        (with(&|v| v["sync_interval"] = json!("1s")), "invalid_request", "sync_interval"),
        (with(&|v| v["unreachable_after"] = json!(0)), "invalid_request", "unreachable_after"),
        (with(&|v| v["mount"] = json!("external//x")), "invalid_path", "mount"),
        (with(&|v| v["path_mapping"] = json!([])), "invalid_request", "path_mapping"),
        (
            with(&|v| v["path_mapping"] = json!([{"source": "other/**", "target": "secret/data/**"}])),
            "invalid_request",
            "mount",
        ),
        (
            with(&|v| {
                v["path_mapping"] = json!([{"source": "external/hashicorp/**", "target": "secret/../sys/**"}])
            }),
            "invalid_request",
            "target",
        ),
        (with(&|v| v["connection"]["address"] = json!("ftp://vault")), "invalid_request", "address"),
        (
            with(&|v| v["path_mapping"] = json!([{"source": "external/hashicorp/**", "target": "**"}])),
            "invalid_request",
            "secrets engine",
        ),
        (with(&|v| v["connection"]["namespace"] = json!("team a\n")), "invalid_request", "namespace"),
        (
            with(&|v| v["connection"]["credentials_path"] = json!("external/hashicorp/cred")),
            "invalid_request",
            "credentials_path",
        ),
        (with(&|v| v["connection"]["ca_cert_path"] = json!("/etc/ca.pem")), "invalid_path", "ca_cert_path"),
        (
            with(&|v| v["connection"]["ca_cert_path"] = json!("external/hashicorp/ca")),
            "invalid_request",
            "ca_cert_path",
        ),
        (
            with(&|v| {
                // Empty strings are fields left out, so the next problem is the one reported.
                v["connection"]["region"] = json!("");
                v["connection"]["ca_cert_path"] = json!("");
                v["connection"]["credentials_path"] = json!("external/hashicorp/cred");
            }),
            "invalid_request",
            "credentials_path: must not lie under",
        ),
        (with(&|v| v["name"] = json!("Bad Name")), "invalid_request", "name"),
        (with(&|v| v["unknown"] = json!(1)), "invalid_request", "unknown"),
    ];
    for (body, code, mentions) in cases {
        let r = api.post("/v1/federation/backends", &body).await;
        assert_eq!((r.status / 100, r.code()), (4, code), "{body}: {}", r.text);
        assert!(r.text.contains(mentions), "{body}: {}", r.text);
    }
    let r = api.get("/v1/federation/backends").await;
    assert_eq!(r.body["backends"], json!([]), "nothing was stored: {}", r.text);
    let r = api.get("/v1/federation/backends/fed_missing").await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);
    // Naming a credential needs the right to read it: federation:write alone could otherwise send
    // any secret of the tenant to an address of the caller's choosing.
    let r = api
        .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:fed-admin", "scopes": ["federation:write", "federation:read"]}))
        .await;
    let fed_admin = api.with_token(r.body["token"].as_str().expect("token"));
    let r = fed_admin.post("/v1/federation/backends", &base).await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
    assert!(r.text.contains("credentials_path"), "{}", r.text);
    grant(&api, "fed-cred", "infra/federation/*", "read", "sa:fed-admin").await;
    let r = fed_admin.post("/v1/federation/backends", &base).await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "it may not write the mount either: {}", r.text);
    assert!(r.text.contains("mount"), "{}", r.text);
    grant(&api, "fed-mount", "external/**", "write", "sa:fed-admin").await;
    let r = fed_admin.post("/v1/federation/backends", &base).await;
    assert_eq!(
        r.status, 201,
        "allowed once policies let it read the credential and write the mount: {}",
        r.text
    );
    let id = r.body["id"].as_str().expect("id").to_owned();
    // Changing a backend needs the same authority over its mount as making it: otherwise a holder
    // of federation:write could point someone else's backend at an address of its own, with a
    // credential of its own, and receive what is written under the mount.
    let r = api
        .post("/v1/auth/tokens", &json!({"identity_type": "service_account", "identity_id": "sa:intruder", "scopes": ["federation:write", "federation:read"]}))
        .await;
    let intruder = api.with_token(r.body["token"].as_str().expect("token"));
    grant(&api, "intruder-cred", "infra/federation/*", "read", "sa:intruder").await;
    let hijack = json!({"connection": {"address": "http://127.0.0.1:9", "auth_method": "token",
        "credentials_path": "infra/federation/vault-approle"}, "write_through": true});
    let r = intruder
        .send(Method::PATCH, &format!("/v1/federation/backends/{id}"), Some(hijack.to_string().into_bytes()))
        .await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
    // Write on the mount and one level below it is not the whole subtree.
    grant(&api, "shallow", "external/hashicorp", "write", "sa:intruder").await;
    grant(&api, "shallow-below", "external/hashicorp/*", "write", "sa:intruder").await;
    let r = intruder
        .send(Method::PATCH, &format!("/v1/federation/backends/{id}"), Some(hijack.to_string().into_bytes()))
        .await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
    // A deny anywhere inside the mount keeps its holder from governing the mount.
    let deny = json!({"name": "no-prod", "rules": [{"path_pattern": "external/hashicorp/prod/**", "permissions": ["read"], "effect": "deny"}]});
    let r = api.post("/v1/policies", &deny).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy id").to_owned();
    let binding = json!({"identity_type": "service_account", "identity_id": "sa:fed-admin"});
    assert_eq!(api.post(&format!("/v1/policies/{policy}/bindings"), &binding).await.status, 201);
    let r = fed_admin
        .send(
            Method::PATCH,
            &format!("/v1/federation/backends/{id}"),
            Some(json!({"sync_interval": "10m"}).to_string().into_bytes()),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
    assert_eq!(api.send(Method::DELETE, &format!("/v1/policies/{policy}"), None).await.status, 204);
    let r = fed_admin
        .send(
            Method::PATCH,
            &format!("/v1/federation/backends/{id}"),
            Some(json!({"sync_interval": "10m"}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = fed_admin.send(Method::DELETE, &format!("/v1/federation/backends/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);

    // A backend whose credential secret is missing answers reads with backend_error, not a panic.
    let r = api.post("/v1/federation/backends", &base).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api.get_secret(PASSWORD, None).await;
    assert_eq!((r.status, r.code()), (502, "backend_error"), "{}", r.text);
    assert!(r.text.contains("credentials_path"), "{}", r.text);
    // A mount cannot be laid over local secrets: they would be hidden, yet live.
    let id =
        api.get("/v1/federation/backends").await.body["backends"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.send(Method::DELETE, &format!("/v1/federation/backends/{id}"), None).await.status, 204);
    assert_eq!(api.put_secret("external/hashicorp/local/x", &json!({"data": {"k": "v"}})).await.status, 201);
    let r = api.post("/v1/federation/backends", &base).await;
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);
    assert!(r.text.contains("local secrets"), "{}", r.text);
}

#[tokio::test]
async fn an_aws_secrets_manager_backend_serves_current_values_and_tags() {
    let Some(mut moto) = MotoServer::start().await else { return };
    let password = random_alnum(24);
    moto.call(
        "CreateSecret",
        json!({"Name": "prod/db", "SecretString": json!({"user": "app", "password": password}).to_string(),
               "Tags": [{"Key": "team", "Value": "billing"}]}),
    )
    .await;
    moto.call("CreateSecret", json!({"Name": "prod/api-key", "SecretString": "plain-key"})).await;
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let keys = json!({"data": {"access_key_id": "AKIATESTING", "secret_access_key": "testing-secret"}});
    assert_eq!(api.put_secret("infra/federation/aws", &keys).await.status, 201);
    let r = api
        .post(
            "/v1/federation/backends",
            &json!({
                "name": "aws-prod",
                "type": "aws_secrets_manager",
                "mount": "external/aws",
                "connection": {"region": "us-east-1", "endpoint": moto.endpoint(), "credentials_path": "infra/federation/aws"},
                "path_mapping": [{"source": "external/aws/**", "target": "**"}]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.text.contains("testing-secret"));
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(r.body["mode"], "proxy", "proxy is the default");

    let r = api.get_secret("external/aws/prod/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], json!({"user": "app", "password": password}));
    assert_eq!(r.body["metadata"]["custom"]["team"], "billing");
    let r = api.get_secret("external/aws/prod/api-key", None).await;
    assert_eq!(r.body["data"], json!({"value": "plain-key"}), "{}", r.text);
    let r = api.get_secret("external/aws/prod/db", Some(1)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "versions are not numbered: {}", r.text);
    let r = api.get_secret("external/aws/prod/none", None).await;
    assert_eq!((r.status, r.code()), (404, "secret_not_found"), "{}", r.text);
    let r = api.put_secret("external/aws/prod/db", &json!({"data": {"password": "x"}})).await;
    assert_eq!((r.status, r.code()), (409, "read_only_path"), "{}", r.text);
    let r = api.get(&format!("/v1/federation/backends/{id}/status")).await;
    assert_eq!(r.body["state"], "healthy", "{}", r.text);
    // A role assumed with the credential secret's keys (moto's STS), its temporary keys signing.
    let r = api
        .post(
            "/v1/federation/backends",
            &json!({
                "name": "aws-role",
                "type": "aws_secrets_manager",
                "mount": "external/aws-role",
                "connection": {"region": "us-east-1", "endpoint": moto.endpoint(), "credentials_path": "infra/federation/aws",
                    "role_arn": "arn:aws:iam::123456789012:role/scaivault-reader"},
                "path_mapping": [{"source": "external/aws-role/**", "target": "**"}]
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["connection"]["role_arn"], "arn:aws:iam::123456789012:role/scaivault-reader");
    let r = api.get_secret("external/aws-role/prod/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["password"], password.as_str());
    moto.stop();
    let r = api.get_secret("external/aws/prod/db", None).await;
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{}", r.text);
    let watched = [("password", password.as_bytes()), ("key", b"testing-secret".as_slice())];
    let export = api.get("/v1/audit/export").await;
    assert!(leaks_in(export.text.as_bytes(), &watched).is_empty());
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(leaks_in(log.as_bytes(), &watched).is_empty(), "the server's log carries a value or the key");
    drop(server);
}

#[tokio::test]
async fn a_vault_behind_a_private_ca_is_reached_with_the_ca_kept_in_scaivault() {
    let Some(bao) = OpenBaoDev::start_tls().await else { return };
    let password = random_alnum(24);
    bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": password}})).await;
    let ca = String::from_utf8(bao.ca_pem().expect("a CA")).expect("PEM text");
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let token = json!({"data": {"token": scaivault_federation::testing::OPENBAO_ROOT_TOKEN}});
    assert_eq!(api.put_secret("infra/federation/vault-token", &token).await.status, 201);
    assert_eq!(
        api.put_secret("infra/federation/vault-ca", &json!({"data": {"certificate": ca}})).await.status,
        201
    );
    let mut config = backend_config(bao.address());
    token_auth(&mut config);
    // Without the CA the public roots do not know the server's certificate.
    let r = api.post("/v1/federation/backends", &config).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = api.get_secret(PASSWORD, None).await;
    assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{}", r.text);
    let r = patch(
        &api,
        &id,
        json!({"connection": {"address": bao.address(), "auth_method": "token",
        "credentials_path": "infra/federation/vault-token", "ca_cert_path": "infra/federation/vault-ca"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.get_secret(PASSWORD, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["password"], password.as_str());
    // Opening the CA is audited as the credential is.
    let trail = api.get("/v1/audit?action=federation.credential.read").await;
    assert!(trail.text.contains("infra/federation/vault-ca"), "{}", trail.text);
    // Naming the CA needs the right to read it, as naming the credential does.
    let r = api
        .post(
            "/v1/auth/tokens",
            &json!({"identity_type": "service_account", "identity_id": "sa:fed-admin",
            "scopes": ["federation:write", "federation:read"]}),
        )
        .await;
    let fed_admin = api.with_token(r.body["token"].as_str().expect("token"));
    grant(&api, "fed-cred", "infra/federation/vault-token", "read", "sa:fed-admin").await;
    grant(&api, "fed-mount", "external/**", "write", "sa:fed-admin").await;
    let mut other = config.clone();
    other["name"] = json!("second");
    other["mount"] = json!("external/second");
    other["path_mapping"] = json!([{"source": "external/second/**", "target": "secret/data/**"}]);
    other["connection"]["ca_cert_path"] = json!("infra/federation/vault-ca");
    let r = fed_admin.post("/v1/federation/backends", &other).await;
    assert_eq!((r.status, r.code()), (403, "access_denied"), "{}", r.text);
    assert!(r.text.contains("ca_cert_path"), "{}", r.text);
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        !log.contains("BEGIN CERTIFICATE") && !log.contains(&password),
        "the log carries the CA or a value"
    );
    drop(server);
}

/// Stand-ins for Azure Key Vault and GCP Secret Manager, built from their public REST documentation.
async fn cloud_standins(password: &str) -> MockServer {
    use base64::Engine;
    use wiremock::matchers::{method, path};
    let server = MockServer::start().await;
    let token =
        |t: &str| ResponseTemplate::new(200).set_body_json(json!({"access_token": t, "expires_in": 3599}));
    // An application's certificate signs a client assertion instead of sending a secret.
    Mock::given(method("POST"))
        .and(path("/tenant-1/oauth2/v2.0/token"))
        .and(wiremock::matchers::body_string_contains("client_assertion="))
        .respond_with(token("az"))
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tenant-1/oauth2/v2.0/token"))
        .and(wiremock::matchers::body_string_contains("client_secret="))
        .respond_with(token("az"))
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/token")).respond_with(token("gcp")).mount(&server).await;
    let value = json!({"user": "app", "password": password}).to_string();
    Mock::given(method("GET"))
        .and(path("/secrets/prod-db"))
        .and(wiremock::matchers::header("authorization", "Bearer az"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": value,
            "id": format!("{}/secrets/prod-db/0a1b2c", server.uri()),
            "attributes": {"enabled": true, "created": 1_700_000_000}, "tags": {"team": "billing"}})))
        .mount(&server)
        .await;
    let payload = base64::engine::general_purpose::STANDARD.encode(&value);
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/prod-db/versions/2:access"))
        .and(wiremock::matchers::header("authorization", "Bearer gcp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "projects/9/secrets/prod-db/versions/2", "payload": {"data": payload}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/prod-db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"labels": {"team": "payments"}})))
        .mount(&server)
        .await;
    // Everything else is a missing secret, as both services answer it.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {"code": "SecretNotFound"}})))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn azure_and_gcp_backends_serve_proxy_reads_with_credentials_kept_in_scaivault() {
    let password = random_alnum(24);
    let cloud = cloud_standins(&password).await;
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let client_secret = random_alnum(32);
    let azure_credential = json!({"data": {"client_id": "app-1", "client_secret": client_secret}});
    assert_eq!(api.put_secret("infra/federation/azure", &azure_credential).await.status, 201);
    let key = json!({"data": {"type": "service_account", "project_id": "p1", "private_key_id": "kid-1",
        "private_key": include_str!("../../../crates/scaivault-core/tests/fixtures/rsa2048-test-key.pem"),
        "client_email": "scaivault@p1.iam.gserviceaccount.com", "token_uri": format!("{}/token", cloud.uri())}});
    assert_eq!(api.put_secret("infra/federation/gcp", &key).await.status, 201);
    let certificate = format!(
        "{}{}",
        include_str!("../../../crates/scaivault-federation/tests/fixtures/azure-app-cert.pem"),
        include_str!("../../../crates/scaivault-core/tests/fixtures/rsa2048-test-key.pem")
    );
    let cert_credential = json!({"data": {"client_id": "app-2", "certificate": certificate}});
    assert_eq!(api.put_secret("infra/federation/azure-cert", &cert_credential).await.status, 201);
    let backends = [
        json!({"name": "azure-prod", "type": "azure_key_vault", "mount": "external/azure",
            "connection": {"vault_url": cloud.uri(), "tenant_id": "tenant-1", "auth_method": "client_secret",
                "authority_host": cloud.uri(), "credentials_path": "infra/federation/azure"},
            "path_mapping": [{"source": "external/azure/*/*", "target": "*-*"}]}),
        json!({"name": "azure-cert", "type": "azure_key_vault", "mount": "external/azure-cert",
            "connection": {"vault_url": cloud.uri(), "tenant_id": "tenant-1", "auth_method": "certificate",
                "authority_host": cloud.uri(), "credentials_path": "infra/federation/azure-cert"},
            "path_mapping": [{"source": "external/azure-cert/*/*", "target": "*-*"}]}),
        json!({"name": "gcp-prod", "type": "gcp_secret_manager", "mount": "external/gcp",
            "connection": {"project_id": "p1", "auth_method": "service_account_key", "endpoint": cloud.uri(),
                "credentials_path": "infra/federation/gcp"},
            "path_mapping": [{"source": "external/gcp/*/*", "target": "*-*"}]}),
    ];
    for b in &backends {
        let r = api.post("/v1/federation/backends", b).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert!(!r.text.contains(&client_secret) && !r.text.contains("PRIVATE KEY"), "{}", r.text);
    }

    let r = api.get_secret("external/azure/prod/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], json!({"user": "app", "password": password}));
    assert_eq!(r.body["metadata"]["custom"]["team"], "billing");
    let r = api.get_secret("external/azure-cert/prod/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], json!({"user": "app", "password": password}));
    let r = api.get_secret("external/azure/prod/db", Some(1)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "Azure versions are not numbered: {}", r.text);
    let r = api.get_secret("external/gcp/prod/db", Some(2)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], json!({"user": "app", "password": password}));
    assert_eq!(r.body["metadata"]["custom"]["team"], "payments");
    for missing in ["external/azure/prod/none", "external/gcp/prod/none"] {
        let r = api.get_secret(missing, None).await;
        assert_eq!((r.status, r.code()), (404, "secret_not_found"), "{missing}: {}", r.text);
    }
    let r = api.get_secret("external/gcp/a/b/c", None).await;
    assert_eq!((r.status, r.code()), (400, "invalid_path"), "no mapping matches: {}", r.text);
    let r = api.put_secret("external/gcp/prod/db", &json!({"data": {"password": "x"}})).await;
    assert_eq!((r.status, r.code()), (409, "read_only_path"), "{}", r.text);

    let watched = [("password", password.as_bytes()), ("client secret", client_secret.as_bytes())];
    let export = api.get("/v1/audit/export").await;
    assert!(leaks_in(export.text.as_bytes(), &watched).is_empty());
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(
        leaks_in(log.as_bytes(), &watched).is_empty(),
        "the server's log carries a value or a credential"
    );
    assert!(!log.contains("PRIVATE KEY"));
    drop(server);
    cloud.verify().await;
}

#[tokio::test]
async fn cloud_identities_are_lent_only_when_the_operator_allows_and_reach_the_metadata_services() {
    use base64::Engine;
    use wiremock::matchers::{header, method, path, query_param};
    let metadata = MockServer::start().await;
    // Azure's instance metadata service and Google's metadata server, as their documentation gives
    // them: a GET with the header each requires; Azure's `expires_in` is a string.
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(query_param("api-version", "2018-02-01"))
        .and(query_param("resource", "https://vault.azure.net"))
        .and(header("metadata", "true"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "mi-token", "expires_in": "3599",
            "resource": "https://vault.azure.net", "token_type": "Bearer"})),
        )
        .expect(1)
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path("/computeMetadata/v1/instance/service-accounts/default/token"))
        .and(header("metadata-flavor", "Google"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "wi-token", "expires_in": 3599,
            "token_type": "Bearer"})),
        )
        .expect(1)
        .mount(&metadata)
        .await;
    // EC2's instance metadata service (IMDSv2): a session token, the instance profile's role,
    // its keys.
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("imds-session"))
        .expect(1)
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ec2-role"))
        .mount(&metadata)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/ec2-role"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"AccessKeyId": "ASIAEC2",
            "SecretAccessKey": "ec2-secret", "Token": "ec2-token",
            "Expiration": (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339()})))
        .mount(&metadata)
        .await;
    let cloud = MockServer::start().await;
    let password = random_alnum(24);
    let value = json!({"password": password}).to_string();
    // STS's AssumeRole, signed with the instance's keys, and Secrets Manager with the role's. The
    // server's identity serves every tenant, so the ExternalId is the tenant's id, not a choice.
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_string_contains("Action=AssumeRole&"))
        .and(wiremock::matchers::body_string_contains("ExternalId=tnt_default"))
        .and(header("x-amz-security-token", "ec2-token"))
        .and(wiremock::matchers::header_regex("authorization", "Credential=ASIAEC2/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAROLE</AccessKeyId>\
             <SecretAccessKey>role-secret</SecretAccessKey><SessionToken>role-token</SessionToken>\
             <Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
            (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()
        )))
        .expect(1)
        .mount(&cloud)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .and(header("x-amz-security-token", "role-token"))
        .and(wiremock::matchers::header_regex("authorization", "Credential=ASIAROLE/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Name": "db", "SecretString": value})))
        .mount(&cloud)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "secretsmanager.DescribeSecret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Name": "db", "Tags": []})))
        .mount(&cloud)
        .await;
    Mock::given(method("GET"))
        .and(path("/secrets/db"))
        .and(header("authorization", "Bearer mi-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": value,
            "id": format!("{}/secrets/db/0a1b", cloud.uri()), "attributes": {"enabled": true}})))
        .mount(&cloud)
        .await;
    let payload = base64::engine::general_purpose::STANDARD.encode(&value);
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db/versions/latest:access"))
        .and(header("authorization", "Bearer wi-token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"name": "projects/9/secrets/db/versions/4", "payload": {"data": payload}}),
            ),
        )
        .mount(&cloud)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/p1/secrets/db"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"labels": {}})))
        .mount(&cloud)
        .await;
    let azure = json!({"name": "azure-mi", "type": "azure_key_vault", "mount": "external/azure",
        "connection": {"vault_url": cloud.uri(), "tenant_id": "tenant-1", "auth_method": "managed_identity"},
        "path_mapping": [{"source": "external/azure/*", "target": "*"}]});
    let gcp = json!({"name": "gcp-wi", "type": "gcp_secret_manager", "mount": "external/gcp",
        "connection": {"project_id": "p1", "endpoint": cloud.uri(), "auth_method": "workload_identity"},
        "path_mapping": [{"source": "external/gcp/*", "target": "*"}]});
    let aws = json!({"name": "aws-role", "type": "aws_secrets_manager", "mount": "external/aws",
        "connection": {"region": "eu-west-1", "endpoint": cloud.uri(), "role_arn": "arn:aws:iam::123456789012:role/reader"},
        "path_mapping": [{"source": "external/aws/*", "target": "*"}]});
    let client = http_client();

    // Lent, but not to this machine: the stand-ins listen on loopback, where any process could.
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .arg("--federation-ambient-identity")
        .root_token_file(&scratch.path().join("root-token"))
        .start()
        .await;
    let root = server.root_token().expect("root token").to_owned();
    let api = Api::new(&client, &server, &root);
    for b in [&azure, &gcp, &aws] {
        let r = api.post("/v1/federation/backends", b).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        assert!(r.text.contains("--federation-identity-loopback"), "{}", r.text);
    }
    drop(server);

    // Lent when the operator says so; the metadata services are found where the clouds' own
    // SDKs look for them.
    let metadata_host = metadata.uri().trim_start_matches("http://").to_owned();
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .arg("--federation-ambient-identity")
        .arg("--federation-identity-loopback")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", metadata.uri())
        .env("GCE_METADATA_HOST", &metadata_host)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.uri())
        .start()
        .await;
    let api = Api::new(&client, &server, &root);
    // The identity's token is presented only to the cloud's own service (or this machine).
    let mut elsewhere = azure.clone();
    elsewhere["connection"]["vault_url"] = json!("https://kv1.vault.azure.net.attacker.example");
    let mut google_only = gcp.clone();
    google_only["connection"]["endpoint"] = json!("https://secretmanager.attacker.example");
    let mut aws_only = aws.clone();
    aws_only["connection"]["endpoint"] = json!("https://secretsmanager.attacker.example");
    for b in [&elsewhere, &google_only, &aws_only] {
        let r = api.post("/v1/federation/backends", b).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        assert!(r.text.contains("presented only to"), "{}", r.text);
    }
    let mut with_credential = azure.clone();
    with_credential["connection"]["credentials_path"] = json!("infra/azure");
    let r = api.post("/v1/federation/backends", &with_credential).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    assert!(r.text.contains("credentials_path"), "{}", r.text);
    let mut chosen_external_id = aws.clone();
    chosen_external_id["connection"]["external_id"] = json!("tnt_other");
    let r = api.post("/v1/federation/backends", &chosen_external_id).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    assert!(r.text.contains("connection.external_id"), "{}", r.text);
    for b in [&azure, &gcp, &aws] {
        let r = api.post("/v1/federation/backends", b).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for p in [
        "external/azure/db",
        "external/gcp/db",
        "external/aws/db",
        "external/azure/db",
        "external/gcp/db",
        "external/aws/db",
    ] {
        let r = api.get_secret(p, None).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text);
        assert_eq!(r.body["data"], json!({"password": password}), "{p}");
    }
    let log = format!("{}{}", server.stdout(), server.stderr());
    for token in
        ["mi-token", "wi-token", "ec2-secret", "ec2-token", "role-secret", "role-token", password.as_str()]
    {
        assert!(!log.contains(token), "the server's log carries {token}");
        assert!(!api.get("/v1/audit/export").await.text.contains(token));
    }
    let used = api.get("/v1/audit?action=federation.identity.use").await;
    assert_eq!(used.body["logs"].as_array().map(Vec::len), Some(3), "one client built each: {}", used.text);
    drop(server);
    // One token each, reused by the second reads (`expect(1)` above is checked on drop).
    metadata.verify().await;
    cloud.verify().await;

    // A server that does not lend its identity refuses such backends, and stops serving those
    // configured while it did.
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", metadata.uri())
        .start()
        .await;
    let api = Api::new(&client, &server, &root);
    let r = api.get_secret("external/azure/db", None).await;
    assert_eq!((r.status, r.code()), (502, "backend_error"), "{}", r.text);
    let mut renamed = gcp.clone();
    renamed["name"] = json!("gcp-wi-2");
    renamed["mount"] = json!("external/gcp2");
    renamed["path_mapping"] = json!([{"source": "external/gcp2/*", "target": "*"}]);
    let r = api.post("/v1/federation/backends", &renamed).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    assert!(r.text.contains("--federation-ambient-identity"), "{}", r.text);
    drop(server);
}

/// A server that may deliver webhooks to loopback and runs its scheduler every second.
async fn start_scheduled(dir: &std::path::Path, storage: &Storage) -> (ServerProcess, String) {
    let server = ServerCommand::new(dir)
        .storage(storage)
        .arg("--webhook-allow-private")
        .arg("--scheduler-tick")
        .arg("1s")
        .root_token_file(&dir.join("root-token"))
        .start()
        .await;
    let root = server.root_token().expect("root token").to_owned();
    (server, root)
}

/// Polls `f` every 200 ms until it is true, for at most `secs` seconds.
async fn eventually<F: std::future::Future<Output = bool>>(secs: u64, mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn sync_now(api: &Api, id: &str) -> Value {
    let r = api.post(&format!("/v1/federation/backends/{id}/sync"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

async fn patch(api: &Api, id: &str, body: Value) -> scaivault_e2e::Reply {
    api.send(Method::PATCH, &format!("/v1/federation/backends/{id}"), Some(body.to_string().into_bytes()))
        .await
}

async fn bao_password(bao: &OpenBaoDev) -> Value {
    bao.call(Method::GET, "secret/data/app/db/password", json!({})).await["data"]["data"]["password"].clone()
}

#[tokio::test]
async fn a_sync_backend_keeps_history_serves_locally_and_settles_conflicts() {
    for backend in backends() {
        let Some(mut bao) = OpenBaoDev::start().await else { return };
        let root_token = scaivault_federation::testing::OPENBAO_ROOT_TOKEN;
        let first = random_alnum(24);
        let second = random_alnum(24);
        for value in [&first, &second] {
            bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": value}})).await;
        }
        bao.call(
            Method::POST,
            "secret/metadata/app/db/password",
            json!({"custom_metadata": {"owner": "platform"}}),
        )
        .await;
        bao.call(Method::POST, "secret/data/app/api/key", json!({"data": {"key": "k-1"}})).await;
        // A name no ScaiVault path can have (a reserved last segment): skipped and reported.
        bao.call(Method::POST, "secret/data/app/versions", json!({"data": {"x": "y"}})).await;

        let receiver = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_scheduled(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let hook = json!({"name": "fed-alerts", "url": receiver.uri(),
            "events": ["federation.sync.completed", "federation.sync.failed", "federation.backend.unreachable"]});
        assert_eq!(api.post("/v1/webhooks", &hook).await.status, 201);
        let r = api.put_secret("infra/federation/vault-token", &json!({"data": {"token": root_token}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let mut config = backend_config(bao.address());
        config["mode"] = json!("sync");
        config["sync_interval"] = json!("1h");
        token_auth(&mut config);
        let r = api.post("/v1/federation/backends", &config).await;
        assert_eq!(r.status, 201, "{backend:?}: {}", r.text);
        let id = r.body["id"].as_str().expect("id").to_owned();

        // The scheduler syncs a new backend at once: history, custom metadata, every mapped name.
        assert!(
            eventually(20, || async {
                api.get(&format!("/v1/federation/backends/{id}/status")).await.body["last_sync_at"]
                    .is_string()
            })
            .await,
            "{backend:?}: the first scheduled sync never landed"
        );
        let r = api.get_secret(PASSWORD, None).await;
        assert_eq!(
            (r.body["data"]["password"].as_str(), r.body["version"].as_u64()),
            (Some(second.as_str()), Some(2))
        );
        assert_eq!(r.body["metadata"]["custom"]["owner"], "platform", "{}", r.text);
        assert_eq!(api.get_secret(PASSWORD, Some(1)).await.body["data"]["password"], first.as_str());
        assert_eq!(api.get_secret("external/hashicorp/app/api/key", None).await.body["data"]["key"], "k-1");
        let report = sync_now(&api, &id).await;
        assert_eq!((report["synced"].as_u64(), report["unchanged"].as_u64()), (Some(0), Some(2)), "{report}");
        assert_eq!(report["skipped"][0]["path"], "secret/data/app/versions", "{report}");
        assert!(
            report["skipped"][0]["reason"].as_str().unwrap_or_default().contains("not a valid"),
            "{report}"
        );

        // A new backend version comes across as the next local one.
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "third"}})).await;
        assert_eq!(sync_now(&api, &id).await["synced"], 1);
        let r = api.get_secret(PASSWORD, None).await;
        assert_eq!(
            (r.body["data"]["password"].as_str(), r.body["version"].as_u64()),
            (Some("third"), Some(3))
        );

        // Without write-through a local write stays local (the backend goes stale), until the
        // backend changes too: then backend_wins overwrites it.
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "local-4"}})).await;
        assert_eq!(r.status, 200, "sync mode takes writes: {}", r.text);
        assert_eq!(sync_now(&api, &id).await["unchanged"], 2);
        assert_eq!(bao_password(&bao).await, "third");
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "remote-4"}}))
            .await;
        let report = sync_now(&api, &id).await;
        assert_eq!(report["conflicts"][0]["path"], PASSWORD, "{report}");
        assert_eq!(report["conflicts"][0]["resolution"], "backend_wins", "{report}");
        assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["password"], "remote-4");

        // manual: flagged, left alone by later syncs, settled by resolve.
        assert_eq!(patch(&api, &id, json!({"conflict_resolution": "manual"})).await.status, 200);
        api.put_secret(PASSWORD, &json!({"data": {"password": "mine"}})).await;
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "theirs"}})).await;
        let report = sync_now(&api, &id).await;
        assert_eq!(report["conflicts"][0]["resolution"], "manual", "{report}");
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "theirs-2"}}))
            .await;
        sync_now(&api, &id).await;
        assert_eq!(
            api.get_secret(PASSWORD, None).await.body["data"]["password"],
            "mine",
            "excluded until resolved"
        );
        let r = api.get(&format!("/v1/federation/backends/{id}/conflicts")).await;
        assert_eq!(r.body["conflicts"][0]["path"], PASSWORD, "{}", r.text);
        assert!(r.body["conflicts"][0]["remote_updated_at"].is_string(), "{}", r.text);
        assert_eq!(api.get(&format!("/v1/federation/backends/{id}/status")).await.body["conflicts"], 1);
        let resolve = |winner: &str| json!({"path": PASSWORD, "winner": winner});
        let r =
            api.post(&format!("/v1/federation/backends/{id}/conflicts/resolve"), &resolve("nobody")).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        let r =
            api.post(&format!("/v1/federation/backends/{id}/conflicts/resolve"), &resolve("backend")).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["password"], "theirs-2");
        let r =
            api.post(&format!("/v1/federation/backends/{id}/conflicts/resolve"), &resolve("backend")).await;
        assert_eq!((r.status, r.code()), (404, "not_found"), "nothing is flagged now: {}", r.text);
        assert_eq!(sync_now(&api, &id).await["conflicts"], json!([]));

        // With write-through, a write reaches the backend first; local_wins needs it.
        let r = patch(&api, &id, json!({"conflict_resolution": "local_wins"})).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        let r = patch(&api, &id, json!({"write_through": true, "conflict_resolution": "local_wins"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let through = random_alnum(24);
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": through}})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(bao_password(&bao).await, through.as_str());
        let r = api.put_secret("external/hashicorp/app/new", &json!({"data": {"fresh": "yes"}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let fresh = bao.call(Method::GET, "secret/data/app/new", json!({})).await;
        assert_eq!(fresh["data"]["data"]["fresh"], "yes", "created in the backend too");
        let report = sync_now(&api, &id).await;
        assert_eq!((report["synced"].as_u64(), report["unchanged"].as_u64()), (Some(0), Some(3)), "{report}");
        // A stale compare-and-set is refused before the backend is written.
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "cas"}, "cas": 1})).await;
        assert_eq!(r.status / 100, 4, "{}", r.text);
        assert_eq!(bao_password(&bao).await, through.as_str());

        let r = api.get(&format!("/v1/federation/backends/{id}/status")).await;
        assert!(r.body["last_sync_at"].is_string() && r.body["last_sync_duration_ms"].is_u64(), "{}", r.text);
        assert_eq!(
            (r.body["secrets_synced"].as_u64(), r.body["conflicts"].as_u64()),
            (Some(3), Some(0)),
            "{}",
            r.text
        );
        assert_eq!(r.body["skipped"][0]["path"], "secret/data/app/versions", "{}", r.text);
        // Synced writes are audited as the system's, with the usual secret events.
        let r = api.get(&format!("/v1/audit/secrets/{PASSWORD}")).await;
        assert!(r.text.contains("federation.sync.write"), "{}", r.text);

        // The backend stops: reads go on locally, syncs fail, and after three in a row the backend
        // is reported unreachable.
        bao.stop();
        assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["password"], through.as_str());
        for _ in 0..3 {
            let r = api.post(&format!("/v1/federation/backends/{id}/sync"), &json!({})).await;
            assert_eq!((r.status, r.code()), (503, "service_unavailable"), "{}", r.text);
        }
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "nowhere"}})).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "service_unavailable"),
            "write-through needs the backend: {}",
            r.text
        );
        assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["password"], through.as_str());
        let kinds = || async {
            let got = receiver.received_requests().await.unwrap_or_default();
            got.iter()
                .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .map(|e| e["event_type"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert!(
            eventually(20, || async { kinds().await.iter().any(|k| k == "federation.backend.unreachable") })
                .await,
            "{backend:?}: {:?}",
            kinds().await
        );
        let seen = kinds().await;
        assert!(seen.iter().any(|k| k == "federation.sync.completed"), "{seen:?}");
        assert_eq!(seen.iter().filter(|k| *k == "federation.sync.failed").count(), 3, "{seen:?}");

        // Back to proxy is refused while synced secrets live under the mount.
        let r = patch(&api, &id, json!({"mode": "proxy"})).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);

        let watched = [
            ("first", first.as_bytes()),
            ("second", second.as_bytes()),
            ("through", through.as_bytes()),
            ("token", root_token.as_bytes()),
        ];
        let export = api.get("/v1/audit/export").await;
        let deliveries: Vec<u8> = receiver
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .flat_map(|r| r.body.clone())
            .collect();
        for (what, bytes) in [
            ("export", export.text.into_bytes()),
            ("log", format!("{}{}", server.stdout(), server.stderr()).into_bytes()),
            ("events", deliveries),
        ] {
            let leaks = leaks_in(&bytes, &watched);
            assert!(leaks.is_empty(), "{backend:?} {what}: {leaks:?}");
        }
        drop(server);
    }
}

/// Seed 003's migration, one subtree at a time: a proxy backend, then one `PATCH` of the subtree's
/// rule flips `app/**` to sync. That subtree is pulled in, read locally (also with the backend
/// down) and writable; the rest stays proxied and read-only; scheduled syncs run for it though the
/// backend's own mode is proxy; and the subtree cannot go back to proxy while it holds synced
/// secrets.
#[tokio::test]
async fn one_subtree_switches_from_proxy_to_sync_with_a_patch() {
    for backend in backends() {
        let Some(mut bao) = OpenBaoDev::start().await else { return };
        let root_token = scaivault_federation::testing::OPENBAO_ROOT_TOKEN;
        bao.call(Method::POST, "secret/data/app/db/password", json!({"data": {"password": "app-1"}})).await;
        bao.call(Method::POST, "secret/data/ops/pager", json!({"data": {"key": "ops-1"}})).await;
        let scratch = Scratch::new();
        let storage = backend.fresh(scratch.path()).expect("storage");
        let (server, root) = start_scheduled(scratch.path(), &storage).await;
        let client = http_client();
        let api = Api::new(&client, &server, &root);
        let r = api.put_secret("infra/federation/vault-token", &json!({"data": {"token": root_token}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let mut config = backend_config(bao.address());
        config["sync_interval"] = json!("1h");
        token_auth(&mut config);
        let r = api.post("/v1/federation/backends", &config).await;
        assert_eq!(r.status, 201, "{backend:?}: {}", r.text);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let r = api.post(&format!("/v1/federation/backends/{id}/sync"), &json!({})).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "all proxy: nothing syncs: {}", r.text);
        // A backend in sync mode whose every rule says proxy syncs nothing, and must not keep the
        // scheduler from the others.
        let mut idle = config.clone();
        idle["name"] = json!("idle");
        idle["mount"] = json!("external/idle");
        idle["mode"] = json!("sync");
        idle["path_mapping"] =
            json!([{"source": "external/idle/**", "target": "secret/data/idle/**", "mode": "proxy"}]);
        let r = api.post("/v1/federation/backends", &idle).await;
        assert_eq!(r.status, 201, "{}", r.text);

        // The flip: one rule for the subtree, in sync mode, before the catch-all.
        let mapping = |app_mode: &str| {
            json!({"path_mapping": [
                {"source": "external/hashicorp/app/**", "target": "secret/data/app/**", "mode": app_mode},
                {"source": "external/hashicorp/**", "target": "secret/data/**"}
            ]})
        };
        let r = patch(&api, &id, mapping("sometimes")).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
        let r = patch(&api, &id, mapping("sync")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (r.body["mode"].as_str(), r.body["path_mapping"][0]["mode"].as_str()),
            (Some("proxy"), Some("sync"))
        );
        // The scheduler syncs the subtree on its own; only the subtree is stored.
        assert!(
            eventually(20, || async {
                api.get(&format!("/v1/federation/backends/{id}/status")).await.body["last_sync_at"]
                    .is_string()
            })
            .await,
            "{backend:?}: no scheduled sync of the subtree"
        );
        let logs = format!("{}{}", server.stdout(), server.stderr());
        assert!(
            !logs.contains("federation sync not started") && !logs.contains("sync pass failed"),
            "{logs}"
        );
        let report = sync_now(&api, &id).await;
        assert_eq!((report["synced"].as_u64(), report["unchanged"].as_u64()), (Some(0), Some(1)), "{report}");
        assert_eq!(report["skipped"], json!([]), "{report}");
        let listed = api.get("/v1/secrets?prefix=external/").await;
        let paths: Vec<_> =
            listed.body["secrets"].as_array().expect("list").iter().map(|s| s["path"].clone()).collect();
        assert_eq!(paths, [json!(PASSWORD)], "{}", listed.text);

        // The subtree is local and writable; the rest is live and read-only.
        let r = api.put_secret(PASSWORD, &json!({"data": {"password": "local-2"}})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(bao_password(&bao).await, "app-1", "no write-through: the backend keeps its copy");
        bao.call(Method::POST, "secret/data/ops/pager", json!({"data": {"key": "ops-2"}})).await;
        assert_eq!(api.get_secret("external/hashicorp/ops/pager", None).await.body["data"]["key"], "ops-2");
        let r = api.put_secret("external/hashicorp/ops/pager", &json!({"data": {"key": "x"}})).await;
        assert_eq!((r.status, r.code()), (409, "read_only_path"), "{}", r.text);

        // Back to proxy for the subtree is refused while it holds synced secrets.
        let r = patch(&api, &id, mapping("proxy")).await;
        assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);

        // The backend stops: the subtree reads on locally; the proxied rest cannot.
        bao.stop();
        assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["password"], "local-2");
        let r = api.get_secret("external/hashicorp/ops/pager", None).await;
        assert_eq!(r.status, 503, "{}", r.text);
        drop(server);
    }
}

#[tokio::test]
async fn an_aws_sync_backend_keeps_awscurrent_as_current_and_writes_through() {
    let Some(moto) = MotoServer::start().await else { return };
    let old = random_alnum(24);
    let current = random_alnum(24);
    moto.call(
        "CreateSecret",
        json!({"Name": "prod/db", "SecretString": json!({"password": old}).to_string(),
        "Tags": [{"Key": "team", "Value": "billing"}]}),
    )
    .await;
    moto.call(
        "PutSecretValue",
        json!({"SecretId": "prod/db", "SecretString": json!({"password": current}).to_string()}),
    )
    .await;
    moto.call("CreateSecret", json!({"Name": "prod/api-key", "SecretString": "plain-key"})).await;
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let api = Api::new(&client, &server, &root);
    let keys = json!({"data": {"access_key_id": "AKIATESTING", "secret_access_key": "testing-secret"}});
    assert_eq!(api.put_secret("infra/federation/aws", &keys).await.status, 201);
    let r = api
        .post(
            "/v1/federation/backends",
            &json!({
                "name": "aws-sync", "type": "aws_secrets_manager", "mode": "sync", "mount": "external/aws",
                "connection": {"region": "us-east-1", "endpoint": moto.endpoint(), "credentials_path": "infra/federation/aws"},
                "path_mapping": [{"source": "external/aws/**", "target": "prod/**"}],
                "write_through": true
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let report = sync_now(&api, &id).await;
    assert_eq!(report["synced"], 2, "{report}");
    let r = api.get_secret("external/aws/db", None).await;
    assert_eq!(
        (r.body["data"]["password"].as_str(), r.body["version"].as_u64()),
        (Some(current.as_str()), Some(2))
    );
    assert_eq!(r.body["metadata"]["custom"]["team"], "billing", "{}", r.text);
    assert_eq!(api.get_secret("external/aws/db", Some(1)).await.body["data"]["password"], old.as_str());
    assert_eq!(
        api.get_secret("external/aws/api-key", None).await.body["data"],
        json!({"value": "plain-key"})
    );

    // Writes go to AWS first, in the inverse shapes, and the next sync finds nothing new.
    let r = api.put_secret("external/aws/api-key", &json!({"data": {"value": "rotated-key"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let raw = moto.call("GetSecretValue", json!({"SecretId": "prod/api-key"})).await;
    assert_eq!(raw["SecretString"], "rotated-key");
    assert_eq!(sync_now(&api, &id).await["unchanged"], 2);
    moto.call("PutSecretValue", json!({"SecretId": "prod/db", "SecretString": "{\"password\": \"p-3\"}"}))
        .await;
    assert_eq!(sync_now(&api, &id).await["synced"], 1);
    assert_eq!(api.get_secret("external/aws/db", None).await.body["data"]["password"], "p-3");
    let watched =
        [("old", old.as_bytes()), ("current", current.as_bytes()), ("key", b"testing-secret".as_slice())];
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(leaks_in(log.as_bytes(), &watched).is_empty(), "the server's log carries a value or the key");
    assert!(leaks_in(api.get("/v1/audit/export").await.text.as_bytes(), &watched).is_empty());
    drop(server);
}

#[tokio::test]
async fn a_vault_kubernetes_login_uses_a_kept_token_or_the_pods_own_only_when_lent() {
    use wiremock::matchers::{method, path};
    let Some(bao) = OpenBaoDev::start().await else { return };
    let jwt = scaivault_federation::testing::service_account_jwt("scaivault");
    // Kubernetes' TokenReview API: the token under review is authenticated as the `scaivault`
    // service account.
    let kubernetes = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/apis/authentication.k8s.io/v1/tokenreviews"))
        .and(wiremock::matchers::body_partial_json(json!({"spec": {"token": jwt}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1", "status": {"authenticated": true,
            "user": {"username": "system:serviceaccount:default:scaivault", "uid": "uid-1"}}})))
        .mount(&kubernetes)
        .await;
    bao.call(Method::POST, "sys/auth/kubernetes", json!({"type": "kubernetes"})).await;
    bao.call(
        Method::POST,
        "auth/kubernetes/config",
        json!({"kubernetes_host": kubernetes.uri(), "disable_local_ca_jwt": true,
            "kubernetes_ca_cert": include_str!("../../../crates/scaivault-federation/tests/fixtures/azure-app-cert.pem")}),
    )
    .await;
    bao.call(
        Method::PUT,
        "sys/policies/acl/scaivault",
        json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
    bao.call(
        Method::POST,
        "auth/kubernetes/role/scaivault",
        json!({"bound_service_account_names": ["scaivault"], "bound_service_account_namespaces": ["default"],
            "token_policies": ["scaivault"]}),
    )
    .await;
    let password = random_alnum(24);
    bao.call(Method::POST, "secret/data/app/db", json!({"data": {"password": password}})).await;
    let config = |name: &str, credential: &str| {
        let mut b = backend_config(bao.address());
        b["name"] = json!(name);
        b["mount"] = json!(format!("external/{name}"));
        b["path_mapping"] = json!([{"source": format!("external/{name}/**"), "target": "secret/data/**"}]);
        b["connection"]["auth_method"] = json!("kubernetes");
        b["connection"]["credentials_path"] = json!(credential);
        b
    };
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let client = http_client();

    // Without the flag: a token kept in ScaiVault logs in; the pod's own is not lent.
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let api = Api::new(&client, &server, &root);
    let kept = json!({"data": {"role": "scaivault", "jwt": jwt}});
    assert_eq!(api.put_secret("infra/federation/k8s-kept", &kept).await.status, 201);
    let pods = json!({"data": {"role": "scaivault", "use_server_identity": true}});
    assert_eq!(api.put_secret("infra/federation/k8s-pod", &pods).await.status, 201);
    for b in [config("kept", "infra/federation/k8s-kept"), config("pod", "infra/federation/k8s-pod")] {
        let r = api.post("/v1/federation/backends", &b).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = api.get_secret("external/kept/app/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["password"], password.as_str());
    let r = api.get_secret("external/pod/app/db", None).await;
    assert_eq!((r.status, r.code()), (502, "backend_error"), "{}", r.text);
    assert!(r.text.contains("--federation-ambient-identity"), "{}", r.text);
    drop(server);

    // With the flag but without naming that Vault: still not lent (a Vault can replay a login).
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &jwt).expect("token file");
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .arg("--federation-ambient-identity")
        .arg("--federation-identity-vault=https://vault.example.com:8200")
        .env("SCAIVAULT_KUBERNETES_TOKEN_FILE", token_file.display().to_string())
        .start()
        .await;
    let api = Api::new(&client, &server, &root);
    let r = api.get_secret("external/pod/app/db", None).await;
    assert_eq!((r.status, r.code()), (502, "backend_error"), "{}", r.text);
    assert!(r.text.contains("--federation-identity-vault"), "{}", r.text);
    drop(server);

    // With both: the pod's token file is read at login, and its use audited.
    let server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .arg("--federation-ambient-identity")
        .arg(format!("--federation-identity-vault={}", bao.address()))
        .env("SCAIVAULT_KUBERNETES_TOKEN_FILE", token_file.display().to_string())
        .start()
        .await;
    let api = Api::new(&client, &server, &root);
    let r = api.get_secret("external/pod/app/db", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["password"], password.as_str());
    let used = api.get("/v1/audit?action=federation.identity.use").await;
    assert_eq!(used.body["logs"].as_array().map(Vec::len), Some(1), "{}", used.text);
    assert_eq!(used.body["logs"][0]["secret_path"], "external/pod");
    let log = format!("{}{}", server.stdout(), server.stderr());
    assert!(!log.contains(&jwt) && !log.contains(&password), "the server's log carries the token or a value");
    assert!(!api.get("/v1/audit/export").await.text.contains(&jwt));
    drop(server);
}

/// A Vault KV v2 stand-in holding `secret/data/app/db/password` in two versions, the second
/// answering after `delay`.
async fn slow_vault(delay: Duration) -> MockServer {
    vault_stand_in(Duration::ZERO, delay).await
}

/// [`slow_vault`], with the secret's metadata (what a sync asks first) answering after `describe`.
async fn vault_stand_in(describe: Duration, delay: Duration) -> MockServer {
    use wiremock::matchers::{method, path, query_param};
    let vault = MockServer::start().await;
    let version = |n: u64| json!({"created_time": "2026-12-01T00:00:00Z", "deletion_time": "", "destroyed": false, "version": n});
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/app/db"))
        .and(query_param("list", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"keys": ["password"]}})))
        .mount(&vault)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/app/db/password"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"data": {"current_version": 2, "versions": {"1": version(1), "2": version(2)}}}),
                )
                .set_delay(describe),
        )
        .mount(&vault)
        .await;
    for (n, delay) in [(1u64, Duration::ZERO), (2, delay)] {
        Mock::given(method("GET"))
            .and(path("/v1/secret/data/app/db/password"))
            .and(query_param("version", n.to_string()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(
                        json!({"data": {"data": {"v": format!("remote-{n}")}, "metadata": version(n)}}),
                    )
                    .set_delay(delay),
            )
            .mount(&vault)
            .await;
    }
    vault
}

/// A server on a fresh SQLite store with a sync-mode backend on the stand-in `vault`: the server,
/// the root token's API and the backend's id.
async fn synced_server(scratch: &Scratch, vault: &MockServer) -> (ServerProcess, Api, String) {
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let api = Api::new(&http_client(), &server, &root);
    let id = sync_backend(&api, &vault.uri()).await;
    (server, api, id)
}

/// A sync-mode backend on the stand-in at `address`; its id.
async fn sync_backend(api: &Api, address: &str) -> String {
    let r = api.put_secret("infra/federation/vault-token", &json!({"data": {"token": "stand-in"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut config = backend_config(address);
    config["mode"] = json!("sync");
    config["sync_interval"] = json!("1h");
    config["path_mapping"] =
        json!([{"source": "external/hashicorp/app/db/**", "target": "secret/data/app/db/**"}]);
    token_auth(&mut config);
    let r = api.post("/v1/federation/backends", &config).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("id").to_owned()
}

/// A local write made while a sync is still reading the backend is never overwritten by that
/// sync: each pulled version goes in only on top of the one before it, so the pull stops, the path
/// is reported skipped, and the local value stands. The backend's second version answers slowly,
/// so the local write lands in the middle of the pull.
#[tokio::test]
async fn a_sync_never_overwrites_a_local_write_made_while_it_reads_the_backend() {
    let vault = slow_vault(Duration::from_secs(3)).await;
    let scratch = Scratch::new();
    let (server, api, id) = synced_server(&scratch, &vault).await;

    let syncing = {
        let api = api.clone();
        tokio::spawn(async move { sync_now(&api, &id).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = api.put_secret(PASSWORD, &json!({"data": {"v": "mine"}})).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let report = syncing.await.expect("sync task");
    assert_eq!(report["skipped"][0]["path"], PASSWORD, "{report}");
    assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["v"], "mine", "{report}");
    drop(server);
}

/// A server with a sync backend on a stand-in slow to describe its secret, and a sync of it under
/// way (reading the backend for about another 1.3 s): the API, the backend's id and the run.
async fn sync_under_way(
    scratch: &Scratch,
) -> (MockServer, ServerProcess, Api, String, tokio::task::JoinHandle<Value>) {
    let vault = vault_stand_in(Duration::from_secs(2), Duration::ZERO).await;
    let (server, api, id) = synced_server(scratch, &vault).await;
    let syncing = {
        let (api, id) = (api.clone(), id.clone());
        tokio::spawn(async move { sync_now(&api, &id).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    (vault, server, api, id, syncing)
}

/// A backend switched to proxy mode while a sync reads it: the sync stores nothing under it (a
/// local secret there would be hidden by proxy reads, yet live).
#[tokio::test]
async fn a_sync_stores_nothing_under_paths_switched_to_proxy_meanwhile() {
    let scratch = Scratch::new();
    let (_vault, server, api, id, syncing) = sync_under_way(&scratch).await;
    let r = patch(&api, &id, json!({"mode": "proxy"})).await;
    assert_eq!(r.status, 200, "nothing is stored locally yet: {}", r.text);
    let report = syncing.await.expect("sync task");
    assert_eq!(report["synced"], 0, "{report}");
    // Back to sync and to proxy again: refused only if a synced secret were kept under it.
    assert_eq!(patch(&api, &id, json!({"mode": "sync"})).await.status, 200);
    let r = patch(&api, &id, json!({"mode": "proxy"})).await;
    assert_eq!(r.status, 200, "the sync stored a secret under the proxy mount: {}", r.text);
    drop(server);
}

/// A Vault stand-in ([`slow_vault`] with no delay) that also takes writes of the password, and a
/// server with a sync backend on it whose one secret was synced: the API and the backend's id.
/// Writes answer after `write_delay`.
async fn synced_stand_in(
    scratch: &Scratch,
    write_delay: Duration,
) -> (MockServer, ServerProcess, Api, String) {
    use wiremock::matchers::{method, path};
    let vault = slow_vault(Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path("/v1/secret/data/app/db/password"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"created_time": "2026-12-06T00:00:00Z", "version": 3}}))
                .set_delay(write_delay),
        )
        .mount(&vault)
        .await;
    let (server, api, id) = synced_server(scratch, &vault).await;
    assert_eq!(sync_now(&api, &id).await["synced"], 1);
    // The stand-in's two versions, kept locally as versions 1 and 2.
    assert_eq!(api.get_secret(PASSWORD, None).await.body["version"], 2);
    (vault, server, api, id)
}

/// The bodies of the writes the stand-in received for the password.
async fn password_writes(vault: &MockServer) -> Vec<Value> {
    let received = vault.received_requests().await.unwrap_or_default();
    received
        .iter()
        .filter(|r| {
            r.method == wiremock::http::Method::POST && r.url.path() == "/v1/secret/data/app/db/password"
        })
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect()
}

/// A `PATCH` refused for its mount changes nothing: what the syncs recorded stays, so the next
/// sync sees that only the local side moved, rather than two sides diverged (which
/// `backend_wins` would settle by overwriting the local edit).
#[tokio::test]
async fn a_refused_patch_keeps_the_sync_state() {
    let scratch = Scratch::new();
    let (_vault, server, api, id) = synced_stand_in(&scratch, Duration::ZERO).await;
    let r = api.put_secret(PASSWORD, &json!({"data": {"v": "local edit"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut other = backend_config("http://127.0.0.1:9");
    other["name"] = json!("vault-other");
    other["mount"] = json!("external/other");
    other["path_mapping"] = json!([{"source": "external/other/**", "target": "secret/data/**"}]);
    let r = api.post("/v1/federation/backends", &other).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let moved = json!({
        "mount": "external/other/db",
        "path_mapping": [{"source": "external/other/db/**", "target": "secret/data/app/db/**"}],
    });
    let r = patch(&api, &id, moved).await;
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);
    let report = sync_now(&api, &id).await;
    assert_eq!(report["synced"], 0, "{report}");
    assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["v"], "local edit", "{report}");
    drop(server);
}

/// An automatic rotation under a sync mount with write-through goes to the backend first, as any
/// write there does.
#[tokio::test]
async fn an_automatic_rotation_under_write_through_reaches_the_backend() {
    let scratch = Scratch::new();
    let (vault, server, api, id) = synced_stand_in(&scratch, Duration::ZERO).await;
    let r = patch(&api, &id, json!({"write_through": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api
        .post("/v1/rotation/policies", &json!({"name": "weekly", "interval": "7d", "auto_generate": true}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let policy = r.body["id"].as_str().expect("policy").to_owned();
    let r =
        api.post(&format!("/v1/rotation/policies/{policy}/secrets"), &json!({"secret_path": PASSWORD})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api
        .post(&format!("/v1/rotation/policies/{policy}/rotate"), &json!({"secret_paths": [PASSWORD]}))
        .await;
    assert!(r.status / 100 == 2, "{}", r.text);
    let local = api.get_secret(PASSWORD, None).await;
    assert_eq!(local.body["version"], 3, "{}", local.text);
    let sent = password_writes(&vault).await;
    assert_eq!(sent, [json!({"data": local.body["data"]})], "the rotated value did not reach the backend");
    drop(server);
}

/// A backend changed (here only its sync interval) while a sync reads it: the run stores nothing
/// read under the configuration it began with, and leaves the path to the next run.
#[tokio::test]
async fn a_sync_stores_nothing_once_its_backend_changed() {
    let scratch = Scratch::new();
    let (_vault, server, api, id, syncing) = sync_under_way(&scratch).await;
    assert_eq!(patch(&api, &id, json!({"sync_interval": "2h"})).await.status, 200);
    let report = syncing.await.expect("sync task");
    assert_eq!(report["synced"], 0, "{report}");
    assert!(
        report["skipped"][0]["reason"].as_str().is_some_and(|r| r.contains("changed during this sync")),
        "{report}"
    );
    assert_eq!(api.get_secret(PASSWORD, None).await.status, 404, "nothing stored locally");
    assert_eq!(sync_now(&api, &id).await["synced"], 1, "the next run takes it");
    drop(server);
}

/// Two write-through writes with the same `cas` at once: one wins, the other is refused before
/// it reaches the backend, so the backend holds the winner's value and no other.
#[tokio::test]
async fn write_through_writes_with_one_cas_reach_the_backend_once() {
    let scratch = Scratch::new();
    let (vault, server, api, id) = synced_stand_in(&scratch, Duration::from_millis(500)).await;
    let r = patch(&api, &id, json!({"write_through": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let writers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|v| {
            let api = api.clone();
            tokio::spawn(
                async move { (v, api.put_secret(PASSWORD, &json!({"data": {"v": v}, "cas": 2})).await) },
            )
        })
        .collect();
    let mut won = Vec::new();
    for w in writers {
        let (v, r) = w.await.expect("writer");
        match r.status {
            200 => won.push(v),
            409 => assert_eq!(r.code(), "conflict", "{}", r.text),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(won.len(), 1, "exactly one write wins: {won:?}");
    let sent = password_writes(&vault).await;
    assert_eq!(sent, [json!({"data": {"v": won[0]}})], "the backend was written by the loser too");
    assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["v"], won[0]);
    drop(server);
}

/// A client that gives up on `POST …/sync` does not cut the run short with its lease held: the run
/// finishes, and the next sync is accepted at once rather than refused for fifteen minutes.
#[tokio::test]
async fn a_sync_outlives_the_client_that_asked_for_it() {
    let vault = slow_vault(Duration::from_secs(2)).await;
    let scratch = Scratch::new();
    let (server, api, id) = synced_server(&scratch, &vault).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
    let gave_up = impatient
        .post(format!("{}/v1/federation/backends/{id}/sync", server.base_url()))
        .bearer_auth(server.root_token().expect("root token"))
        .json(&json!({}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(api.get_secret(PASSWORD, None).await.body["data"]["v"], "remote-2", "the run finished");
    let report = sync_now(&api, &id).await;
    assert_eq!(report["unchanged"], 1, "{report}");
    drop(server);
}
