//! The Rust client against the real binary: every method reaches its route and decodes the answer,
//! and the cache serves a secret while the server is stopped.

use std::time::Duration;

use scaivault_client::api::{
    BindingRequest, CreateTokenRequest, CreateWebhookRequest, DestroyRequest, ErrorCode,
    FederationBackendRequest, PatchMetadataRequest, PolicyRequest, PolicyRuleSpec, PolicyTestRequest,
    ResolveConflictRequest, RotationPolicyRequest, UpdateFederationBackendRequest, UpdateWebhookRequest,
    WebhookFilters, WriteSecretRequest,
};
use scaivault_client::{AuditFilter, CacheConfig, Client, Page};
use scaivault_e2e::{Backend, Scratch, start_with_root};
use serde_json::json;

fn write(data: serde_json::Value) -> WriteSecretRequest {
    serde_json::from_value(json!({ "data": data })).expect("request")
}

#[tokio::test]
async fn every_method_reaches_its_route() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (mut server, root) = start_with_root(scratch.path(), &storage).await;
    let vault = Client::builder(server.base_url())
        .token(&root)
        .cache(CacheConfig::default())
        .build()
        .expect("client");

    assert_eq!(vault.health().await.expect("health").status, "ok");
    assert_eq!(vault.ready().await.expect("ready").status, "ready");
    assert!(vault.metrics().await.expect("metrics").contains("scaivault_http_requests"));
    assert_eq!(vault.openapi().await.expect("openapi")["openapi"], "3.0.3");
    assert_eq!(vault.whoami().await.expect("whoami").identity_id, "root");
    let written = vault.write_secret("app/db", &write(json!({"password": "p1"}))).await.expect("write");
    assert_eq!(written.version, 1);
    vault.write_secret("app/db", &write(json!({"password": "p2"}))).await.expect("write 2");
    assert_eq!(vault.read_secret("app/db", Some(1)).await.expect("v1").data["password"], "p1");
    assert_eq!(vault.secret_versions("app/db").await.expect("versions").current_version, 2);
    let listed = vault.list_secrets(Some("app/"), None, &Page::default()).await.expect("list");
    assert_eq!(listed.secrets.len(), 1);
    let meta = PatchMetadataRequest { tags: Some(vec!["db".into()]), ..PatchMetadataRequest::default() };
    vault.update_metadata("app/db", &meta).await.expect("metadata");
    assert_eq!(
        vault.list_secrets(None, Some("db"), &Page::default()).await.expect("tagged").secrets.len(),
        1
    );

    let policy = vault
        .create_policy(&PolicyRequest {
            name: "readers".into(),
            description: String::new(),
            rules: vec![PolicyRuleSpec {
                path_pattern: "app/*".into(),
                permissions: vec!["read".into()],
                effect: "allow".into(),
            }],
        })
        .await
        .expect("policy");
    assert_eq!(vault.get_policy(&policy.id).await.expect("get").name, "readers");
    assert_eq!(vault.list_policies(&Page::default()).await.expect("policies").policies.len(), 1);
    let binding = vault
        .bind_policy(
            &policy.id,
            &BindingRequest { identity_type: "service_account".into(), identity_id: "sa:r".into() },
        )
        .await
        .expect("bind");
    assert_eq!(
        vault.policy_bindings(&policy.id, &Page::default()).await.expect("bindings").bindings.len(),
        1
    );
    assert_eq!(vault.get_binding(&policy.id, &binding.id).await.expect("binding").identity_id, "sa:r");
    let decision = vault
        .test_policy(&PolicyTestRequest {
            path: "app/db".into(),
            permission: "read".into(),
            identity_type: Some("service_account".into()),
            identity_id: Some("sa:r".into()),
            groups: None,
        })
        .await
        .expect("test");
    assert!(decision.allowed);
    vault.unbind_policy(&policy.id, &binding.id).await.expect("unbind");

    let token = vault
        .create_token(&CreateTokenRequest {
            identity_type: Some("service_account".into()),
            identity_id: Some("sa:r".into()),
            scopes: vec!["secrets:read".into()],
            ..CreateTokenRequest::default()
        })
        .await
        .expect("token");
    assert!(
        vault.list_tokens(&Page::default()).await.expect("tokens").tokens.iter().any(|t| t.id == token.id)
    );
    let reader = Client::builder(server.base_url()).token(&token.token).build().expect("reader");
    let denied = reader.read_secret("other/x", None).await.expect_err("no policy");
    assert_eq!(denied.code(), Some(scaivault_client::api::ErrorCode::AccessDenied));
    vault.revoke_token(&token.id).await.expect("revoke");
    vault.delete_policy(&policy.id).await.expect("delete policy");

    let hook = vault
        .create_webhook(&CreateWebhookRequest {
            name: "h".into(),
            url: "https://93.184.216.34/hook".into(),
            secret: None,
            events: vec!["secret.rotated".into()],
            filters: WebhookFilters::default(),
        })
        .await
        .expect("webhook");
    assert!(hook.secret.is_some());
    assert_eq!(vault.list_webhooks(&Page::default()).await.expect("webhooks").webhooks.len(), 1);
    let renamed = UpdateWebhookRequest { name: Some("renamed".into()), ..UpdateWebhookRequest::default() };
    assert_eq!(vault.update_webhook(&hook.id, &renamed).await.expect("update").name, "renamed");
    assert!(vault.webhook_deliveries(&hook.id, &Page::default()).await.expect("log").deliveries.is_empty());

    let rot = vault
        .create_rotation_policy(
            &serde_json::from_value::<RotationPolicyRequest>(
                json!({"name": "weekly", "interval": "7d", "auto_generate": true}),
            )
            .expect("request"),
        )
        .await
        .expect("rotation policy");
    vault.assign_rotation(&rot.id, "app/db").await.expect("assign");
    assert_eq!(
        vault.rotation_assignments(&rot.id, &Page::default()).await.expect("assigned").secrets.len(),
        1
    );
    let forced = vault.force_rotation(&rot.id, &["app/db".to_owned()]).await.expect("force");
    assert_eq!(forced.secrets.len(), 1);
    assert_eq!(vault.secret_versions("app/db").await.expect("versions").current_version, 3);
    vault.rotate_secret("app/db").await.expect("rotate");
    assert_eq!(vault.stale_readers(&rot.id, "app/db").await.expect("readers").current_version, 4);
    vault.unassign_rotation(&rot.id, "app/db").await.expect("unassign");
    vault.delete_rotation_policy(&rot.id).await.expect("delete rotation policy");

    // Federation: configuration round trip (the backend is not reached; its status says so).
    vault.write_secret("infra/vault-token", &write(json!({"token": "t"}))).await.expect("credential");
    let fed = vault
        .create_federation_backend(
            &serde_json::from_value::<FederationBackendRequest>(json!({
                "name": "vault-a", "type": "hashicorp_vault", "mount": "external/a",
                "connection": {"address": "http://127.0.0.1:9", "auth_method": "token", "credentials_path": "infra/vault-token"},
                "path_mapping": [{"source": "external/a/**", "target": "secret/data/**"}]
            }))
            .expect("request"),
        )
        .await
        .expect("federation backend");
    assert_eq!(vault.list_federation_backends(&Page::default()).await.expect("list").backends.len(), 1);
    assert_eq!(vault.get_federation_backend(&fed.id).await.expect("get").mount, "external/a");
    let renamed = UpdateFederationBackendRequest { name: Some("vault-b".into()), ..Default::default() };
    assert_eq!(vault.update_federation_backend(&fed.id, &renamed).await.expect("update").name, "vault-b");
    assert_eq!(vault.federation_status(&fed.id).await.expect("status").state, "unreachable");
    // A proxy-mode backend has nothing to sync and no conflicts.
    assert_eq!(
        vault.sync_federation_backend(&fed.id).await.expect_err("proxy mode").code(),
        Some(ErrorCode::Conflict)
    );
    assert!(vault.list_sync_conflicts(&fed.id).await.expect("conflicts").conflicts.is_empty());
    let resolve = ResolveConflictRequest { path: "external/a/x".into(), winner: "local".into() };
    assert_eq!(
        vault.resolve_sync_conflict(&fed.id, &resolve).await.expect_err("proxy mode").code(),
        Some(ErrorCode::Conflict)
    );
    vault.delete_federation_backend(&fed.id).await.expect("delete federation backend");
    vault.delete_webhook(&hook.id).await.expect("delete webhook");

    vault.delete_secret("app/db").await.expect("delete");
    assert!(vault.read_secret("app/db", None).await.expect_err("deleted").is_not_found());
    vault.undelete_secret("app/db").await.expect("undelete");
    let destroyed =
        vault.destroy_versions("app/db", &DestroyRequest { versions: Some(vec![1]) }).await.expect("destroy");
    assert_eq!(destroyed.destroyed_versions, [1]);

    let trail = vault.secret_audit("app/db", &Page::default()).await.expect("trail");
    assert!(trail.logs.len() >= 4);
    let filter = AuditFilter { action: Some("secret.write".into()), ..AuditFilter::default() };
    assert!(!vault.query_audit(&filter).await.expect("query").logs.is_empty());
    assert!(vault.verify_audit().await.expect("verify").valid);
    let mut exported = 0;
    let count = vault.export_audit(None, None, |_| {
        exported += 1;
        Ok(())
    });
    assert!(count.await.expect("export") > 0);
    assert!(exported > 0);
    assert_eq!(vault.key_status().await.expect("keys").current_key_version, 1);

    // The cache keeps serving a secret while the server is stopped.
    let cached = vault.read_secret_cached("app/db").await.expect("cached");
    server.sigterm_and_wait().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(vault.read_secret_cached("app/db").await.expect("from cache").version, cached.version);
    assert!(vault.read_secret("app/db", None).await.expect_err("server down").is_transient());

    vault.invalidate("app/db");
    assert!(vault.read_secret_cached("app/db").await.is_err(), "nothing cached and nothing to ask");
}

#[tokio::test]
async fn the_live_stream_keeps_the_cache_in_step() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let vault = Client::builder(server.base_url())
        .token(&root)
        .cache(CacheConfig::default())
        .build()
        .expect("client");
    vault.write_secret("app/api", &write(json!({"key": "one"}))).await.expect("write");
    assert_eq!(vault.read_secret_cached("app/api").await.expect("read").data["key"], "one");
    let stream = vault.events(Some("app/**"), None).await.expect("stream");
    let watcher = vault.invalidate_on(stream);
    // Another writer changes it; the 5-minute TTL alone would keep serving "one".
    let other = Client::builder(server.base_url()).token(&root).build().expect("client");
    other.write_secret("app/api", &write(json!({"key": "two"}))).await.expect("write 2");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline {
        seen = vault.read_secret_cached("app/api").await.expect("read").data["key"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if seen == "two" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "two", "the event dropped the cached value");
    watcher.abort();
}

#[tokio::test]
async fn acting_as_a_tenant_and_the_partner_space() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("storage");
    let (server, root) = start_with_root(scratch.path(), &storage).await;
    let admin = Client::builder(server.base_url()).token(&root).build().expect("client");
    let partner: scaivault_client::api::PartnerRequest =
        serde_json::from_value(json!({"name": "acme-group"})).expect("partner");
    let partner = admin.create_partner(&partner).await.expect("partner");
    let tenant: scaivault_client::api::TenantRequest =
        serde_json::from_value(json!({"name": "acme", "id": "tnt_acme", "partner_id": partner.id}))
            .expect("tenant");
    admin.create_tenant(&tenant).await.expect("tenant");
    assert!(
        admin
            .list_tenants(&Page::default())
            .await
            .expect("tenants")
            .tenants
            .iter()
            .any(|t| t.id == "tnt_acme")
    );
    let acme = Client::builder(server.base_url()).token(&root).acting_as("tnt_acme").build().expect("client");
    acme.write_secret("app/key", &write(json!({"k": "acme"}))).await.expect("tenant write");
    assert!(admin.read_secret("app/key", None).await.expect_err("not in the default tenant").is_not_found());
    assert_eq!(acme.whoami().await.expect("whoami").tenant_id, "tnt_acme");
    acme.write_partner_secret("shared/ca", &write(json!({"pem": "x"}))).await.expect("partner write");
    assert_eq!(acme.read_partner_secret("shared/ca", None).await.expect("partner read").data["pem"], "x");
    assert_eq!(acme.list_partner_secrets(None, &Page::default()).await.expect("list").secrets.len(), 1);
    assert_eq!(acme.partner_secret_versions("shared/ca").await.expect("versions").current_version, 1);
    let meta = PatchMetadataRequest { owner: Some("team:pki".into()), ..PatchMetadataRequest::default() };
    acme.update_partner_metadata("shared/ca", &meta).await.expect("metadata");
    acme.write_partner_secret("shared/ca", &write(json!({"pem": "y"}))).await.expect("v2");
    let gone = acme.destroy_partner_versions("shared/ca", &DestroyRequest { versions: Some(vec![1]) }).await;
    assert_eq!(gone.expect("destroy").destroyed_versions, [1]);
    assert!(acme.rotate_partner_secret("shared/ca").await.is_err(), "no rotation policy on it");
    acme.delete_partner_secret("shared/ca").await.expect("delete");
    acme.undelete_partner_secret("shared/ca").await.expect("undelete");
    assert!(!admin.list_partners(&Page::default()).await.expect("partners").partners.is_empty());
}
