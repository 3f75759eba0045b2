//! One typed method per route of the API, with the wire types the server uses.

use reqwest::{Method, Url};
use scaivault_api::*;
use serde_json::Value;

use crate::client::NO_BODY;
use crate::{Client, Error};

/// Adds the query parameters that are set.
fn with_query(mut url: Url, params: &[(&str, Option<String>)]) -> Url {
    if params.iter().any(|(_, v)| v.is_some()) {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    url
}

/// `limit` and `cursor` of a paginated list.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Page {
    fn params(&self) -> [(&'static str, Option<String>); 2] {
        [("limit", self.limit.map(|l| l.to_string())), ("cursor", self.cursor.clone())]
    }
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub identity_id: Option<String>,
    pub path: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// RFC 3339.
    pub start: Option<String>,
    /// RFC 3339.
    pub end: Option<String>,
    pub page: Page,
}

impl Client {
    // ---- health and system

    pub async fn health(&self) -> Result<Health, Error> {
        self.call(Method::GET, self.url(&["v1", "health"]), NO_BODY).await
    }

    /// `GET /v1/health/ready`: `Ok` when storage answers and keys are loaded.
    pub async fn ready(&self) -> Result<Health, Error> {
        self.call(Method::GET, self.url(&["v1", "health", "ready"]), NO_BODY).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let resp = self.send(Method::GET, self.url(&["metrics"]), NO_BODY).await?;
        resp.text().await.map_err(|e| Error::Unreachable(e.without_url().to_string()))
    }

    /// `GET /v1/openapi.json`
    pub async fn openapi(&self) -> Result<Value, Error> {
        self.call(Method::GET, self.url(&["v1", "openapi.json"]), NO_BODY).await
    }

    pub async fn key_status(&self) -> Result<KeyStatusResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "sys", "key-status"]), NO_BODY).await
    }

    pub async fn rotate_master_key(&self) -> Result<KeyStatusResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "sys", "rotate-master-key"]), NO_BODY).await
    }

    // ---- secrets

    /// `PUT /v1/secrets/{path}`
    pub async fn write_secret(&self, path: &str, req: &WriteSecretRequest) -> Result<SecretWritten, Error> {
        self.call(Method::PUT, self.url(&["v1", "secrets", path]), Some(req)).await
    }

    /// `GET /v1/secrets/{path}[?version=N]`
    pub async fn read_secret(&self, path: &str, version: Option<u64>) -> Result<SecretResponse, Error> {
        let url =
            with_query(self.url(&["v1", "secrets", path]), &[("version", version.map(|v| v.to_string()))]);
        self.call(Method::GET, url, NO_BODY).await
    }

    /// `GET /v1/secrets?prefix=&tag=`
    pub async fn list_secrets(
        &self,
        prefix: Option<&str>,
        tag: Option<&str>,
        page: &Page,
    ) -> Result<SecretList, Error> {
        let [limit, cursor] = page.params();
        let params = [("prefix", prefix.map(str::to_owned)), ("tag", tag.map(str::to_owned)), limit, cursor];
        self.call(Method::GET, with_query(self.url(&["v1", "secrets"]), &params), NO_BODY).await
    }

    /// The newest 100 versions; [`Client::secret_versions_page`] for others.
    pub async fn secret_versions(&self, path: &str) -> Result<SecretVersions, Error> {
        self.secret_versions_page(path, &Page::default()).await
    }

    /// One page of the versions, newest first.
    pub async fn secret_versions_page(&self, path: &str, page: &Page) -> Result<SecretVersions, Error> {
        let url = with_query(self.url(&["v1", "secrets", path, "versions"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn update_metadata(
        &self,
        path: &str,
        req: &PatchMetadataRequest,
    ) -> Result<SecretListItem, Error> {
        self.call(Method::PATCH, self.url(&["v1", "secrets", path, "metadata"]), Some(req)).await
    }

    pub async fn delete_secret(&self, path: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "secrets", path]), NO_BODY).await?;
        self.invalidate(path);
        Ok(())
    }

    pub async fn undelete_secret(&self, path: &str) -> Result<SecretListItem, Error> {
        self.call(Method::POST, self.url(&["v1", "secrets", path, "undelete"]), NO_BODY).await
    }

    pub async fn destroy_versions(&self, path: &str, req: &DestroyRequest) -> Result<DestroyResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "secrets", path, "destroy"]), Some(req)).await
    }

    /// `POST /v1/secrets/{path}/rotate`: rotation due now under the secret's policy.
    pub async fn rotate_secret(&self, path: &str) -> Result<RotationAssignment, Error> {
        self.call(Method::POST, self.url(&["v1", "secrets", path, "rotate"]), NO_BODY).await
    }

    // ---- the partner's shared secrets (`/v1/partner/secrets`)

    pub async fn write_partner_secret(
        &self,
        path: &str,
        req: &WriteSecretRequest,
    ) -> Result<SecretWritten, Error> {
        self.call(Method::PUT, self.url(&["v1", "partner", "secrets", path]), Some(req)).await
    }

    pub async fn read_partner_secret(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<SecretResponse, Error> {
        let url = with_query(
            self.url(&["v1", "partner", "secrets", path]),
            &[("version", version.map(|v| v.to_string()))],
        );
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn list_partner_secrets(&self, prefix: Option<&str>, page: &Page) -> Result<SecretList, Error> {
        let [limit, cursor] = page.params();
        let params = [("prefix", prefix.map(str::to_owned)), limit, cursor];
        self.call(Method::GET, with_query(self.url(&["v1", "partner", "secrets"]), &params), NO_BODY).await
    }

    pub async fn partner_secret_versions(&self, path: &str) -> Result<SecretVersions, Error> {
        self.call(Method::GET, self.url(&["v1", "partner", "secrets", path, "versions"]), NO_BODY).await
    }

    pub async fn delete_partner_secret(&self, path: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "partner", "secrets", path]), NO_BODY).await
    }

    pub async fn update_partner_metadata(
        &self,
        path: &str,
        req: &PatchMetadataRequest,
    ) -> Result<SecretListItem, Error> {
        self.call(Method::PATCH, self.url(&["v1", "partner", "secrets", path, "metadata"]), Some(req)).await
    }

    pub async fn undelete_partner_secret(&self, path: &str) -> Result<SecretListItem, Error> {
        self.call(Method::POST, self.url(&["v1", "partner", "secrets", path, "undelete"]), NO_BODY).await
    }

    pub async fn destroy_partner_versions(
        &self,
        path: &str,
        req: &DestroyRequest,
    ) -> Result<DestroyResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "partner", "secrets", path, "destroy"]), Some(req)).await
    }

    pub async fn rotate_partner_secret(&self, path: &str) -> Result<RotationAssignment, Error> {
        self.call(Method::POST, self.url(&["v1", "partner", "secrets", path, "rotate"]), NO_BODY).await
    }

    // ---- tokens and identity

    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.call(Method::GET, self.url(&["v1", "auth", "whoami"]), NO_BODY).await
    }

    pub async fn create_token(&self, req: &CreateTokenRequest) -> Result<CreatedToken, Error> {
        self.call(Method::POST, self.url(&["v1", "auth", "tokens"]), Some(req)).await
    }

    pub async fn list_tokens(&self, page: &Page) -> Result<TokenList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "auth", "tokens"]), &page.params()), NO_BODY).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "auth", "tokens", id]), NO_BODY).await
    }

    pub async fn create_partner(&self, req: &PartnerRequest) -> Result<PartnerResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "identity", "partners"]), Some(req)).await
    }

    pub async fn list_partners(&self, page: &Page) -> Result<PartnerList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "identity", "partners"]), &page.params()), NO_BODY)
            .await
    }

    pub async fn create_tenant(&self, req: &TenantRequest) -> Result<TenantResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "identity", "tenants"]), Some(req)).await
    }

    pub async fn list_tenants(&self, page: &Page) -> Result<TenantList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "identity", "tenants"]), &page.params()), NO_BODY)
            .await
    }

    // ---- policies

    pub async fn create_policy(&self, req: &PolicyRequest) -> Result<PolicyResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "policies"]), Some(req)).await
    }

    pub async fn get_policy(&self, id: &str) -> Result<PolicyResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "policies", id]), NO_BODY).await
    }

    pub async fn list_policies(&self, page: &Page) -> Result<PolicyList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "policies"]), &page.params()), NO_BODY).await
    }

    pub async fn update_policy(&self, id: &str, req: &PolicyRequest) -> Result<PolicyResponse, Error> {
        self.call(Method::PUT, self.url(&["v1", "policies", id]), Some(req)).await
    }

    pub async fn delete_policy(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "policies", id]), NO_BODY).await
    }

    pub async fn bind_policy(&self, id: &str, req: &BindingRequest) -> Result<BindingResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "policies", id, "bindings"]), Some(req)).await
    }

    pub async fn policy_bindings(&self, id: &str, page: &Page) -> Result<BindingList, Error> {
        let url = with_query(self.url(&["v1", "policies", id, "bindings"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn get_binding(&self, id: &str, binding_id: &str) -> Result<BindingResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "policies", id, "bindings", binding_id]), NO_BODY).await
    }

    pub async fn unbind_policy(&self, id: &str, binding_id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "policies", id, "bindings", binding_id]), NO_BODY)
            .await
    }

    pub async fn test_policy(&self, req: &PolicyTestRequest) -> Result<PolicyTestResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "policies", "test"]), Some(req)).await
    }

    // ---- audit

    pub async fn query_audit(&self, f: &AuditFilter) -> Result<AuditList, Error> {
        let [limit, cursor] = f.page.params();
        let params = [
            ("identity_id", f.identity_id.clone()),
            ("path", f.path.clone()),
            ("action", f.action.clone()),
            ("outcome", f.outcome.clone()),
            ("start", f.start.clone()),
            ("end", f.end.clone()),
            limit,
            cursor,
        ];
        self.call(Method::GET, with_query(self.url(&["v1", "audit"]), &params), NO_BODY).await
    }

    pub async fn secret_audit(&self, path: &str, page: &Page) -> Result<AuditList, Error> {
        let url = with_query(self.url(&["v1", "audit", "secrets", path]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn verify_audit(&self) -> Result<AuditVerification, Error> {
        self.call(Method::GET, self.url(&["v1", "audit", "verify"]), NO_BODY).await
    }

    /// `GET /v1/audit/export`: the records as they stream in, one per item.
    pub async fn export_audit(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        mut each: impl FnMut(AuditRecord) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let params = [("start", start.map(str::to_owned)), ("end", end.map(str::to_owned))];
        let mut resp = self
            .send(Method::GET, with_query(self.url(&["v1", "audit", "export"]), &params), NO_BODY)
            .await?;
        let mut buffer = Vec::new();
        let mut count = 0;
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| Error::Unreachable(e.without_url().to_string()))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                each(serde_json::from_slice(&line).map_err(|e| Error::Decode(e.to_string()))?)?;
                count += 1;
            }
        }
        Ok(count)
    }

    // ---- webhooks and subscriptions

    pub async fn create_webhook(&self, req: &CreateWebhookRequest) -> Result<WebhookResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "webhooks"]), Some(req)).await
    }

    pub async fn list_webhooks(&self, page: &Page) -> Result<WebhookList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "webhooks"]), &page.params()), NO_BODY).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<WebhookResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "webhooks", id]), NO_BODY).await
    }

    pub async fn update_webhook(
        &self,
        id: &str,
        req: &UpdateWebhookRequest,
    ) -> Result<WebhookResponse, Error> {
        self.call(Method::PATCH, self.url(&["v1", "webhooks", id]), Some(req)).await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "webhooks", id]), NO_BODY).await
    }

    pub async fn test_webhook(&self, id: &str) -> Result<WebhookTestResult, Error> {
        self.call(Method::POST, self.url(&["v1", "webhooks", id, "test"]), NO_BODY).await
    }

    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        req: &RotateWebhookSecretRequest,
    ) -> Result<WebhookResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "webhooks", id, "rotate-secret"]), Some(req)).await
    }

    pub async fn webhook_deliveries(&self, id: &str, page: &Page) -> Result<DeliveryList, Error> {
        let url = with_query(self.url(&["v1", "webhooks", id, "deliveries"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn redeliver(&self, id: &str, delivery_id: &str) -> Result<Value, Error> {
        let url = self.url(&["v1", "webhooks", id, "deliveries", delivery_id, "redeliver"]);
        self.call(Method::POST, url, NO_BODY).await
    }

    pub async fn create_subscription(
        &self,
        req: &CreateSubscriptionRequest,
    ) -> Result<SubscriptionResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "subscriptions"]), Some(req)).await
    }

    pub async fn list_subscriptions(&self, page: &Page) -> Result<SubscriptionList, Error> {
        self.call(Method::GET, with_query(self.url(&["v1", "subscriptions"]), &page.params()), NO_BODY).await
    }

    pub async fn get_subscription(&self, id: &str) -> Result<SubscriptionResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "subscriptions", id]), NO_BODY).await
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "subscriptions", id]), NO_BODY).await
    }

    // ---- federation

    pub async fn create_federation_backend(
        &self,
        req: &FederationBackendRequest,
    ) -> Result<FederationBackendResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "federation", "backends"]), Some(req)).await
    }

    pub async fn list_federation_backends(&self, page: &Page) -> Result<FederationBackendList, Error> {
        let url = with_query(self.url(&["v1", "federation", "backends"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn get_federation_backend(&self, id: &str) -> Result<FederationBackendResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "federation", "backends", id]), NO_BODY).await
    }

    pub async fn update_federation_backend(
        &self,
        id: &str,
        req: &UpdateFederationBackendRequest,
    ) -> Result<FederationBackendResponse, Error> {
        self.call(Method::PATCH, self.url(&["v1", "federation", "backends", id]), Some(req)).await
    }

    pub async fn delete_federation_backend(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "federation", "backends", id]), NO_BODY).await
    }

    /// Asks the backend now: its state, latency and last error.
    pub async fn federation_status(&self, id: &str) -> Result<FederationStatus, Error> {
        self.call(Method::GET, self.url(&["v1", "federation", "backends", id, "status"]), NO_BODY).await
    }

    /// Syncs a sync-mode backend now and answers the report.
    pub async fn sync_federation_backend(&self, id: &str) -> Result<SyncReport, Error> {
        self.call(Method::POST, self.url(&["v1", "federation", "backends", id, "sync"]), NO_BODY).await
    }

    /// The paths a `manual` conflict flagged.
    pub async fn list_sync_conflicts(&self, id: &str) -> Result<SyncConflictList, Error> {
        self.call(Method::GET, self.url(&["v1", "federation", "backends", id, "conflicts"]), NO_BODY).await
    }

    /// Settles a flagged path: `winner` is `local` or `backend`.
    pub async fn resolve_sync_conflict(&self, id: &str, req: &ResolveConflictRequest) -> Result<(), Error> {
        let url = self.url(&["v1", "federation", "backends", id, "conflicts", "resolve"]);
        self.call_empty(Method::POST, url, Some(req)).await
    }

    // ---- rotation

    pub async fn create_rotation_policy(
        &self,
        req: &RotationPolicyRequest,
    ) -> Result<RotationPolicyResponse, Error> {
        self.call(Method::POST, self.url(&["v1", "rotation", "policies"]), Some(req)).await
    }

    pub async fn list_rotation_policies(&self, page: &Page) -> Result<RotationPolicyList, Error> {
        let url = with_query(self.url(&["v1", "rotation", "policies"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn get_rotation_policy(&self, id: &str) -> Result<RotationPolicyResponse, Error> {
        self.call(Method::GET, self.url(&["v1", "rotation", "policies", id]), NO_BODY).await
    }

    pub async fn update_rotation_policy(
        &self,
        id: &str,
        req: &UpdateRotationPolicyRequest,
    ) -> Result<RotationPolicyResponse, Error> {
        self.call(Method::PATCH, self.url(&["v1", "rotation", "policies", id]), Some(req)).await
    }

    pub async fn delete_rotation_policy(&self, id: &str) -> Result<(), Error> {
        self.call_empty(Method::DELETE, self.url(&["v1", "rotation", "policies", id]), NO_BODY).await
    }

    pub async fn assign_rotation(&self, id: &str, secret_path: &str) -> Result<RotationAssignment, Error> {
        let req = AssignRotationRequest { secret_path: secret_path.to_owned() };
        self.call(Method::POST, self.url(&["v1", "rotation", "policies", id, "secrets"]), Some(&req)).await
    }

    pub async fn rotation_assignments(&self, id: &str, page: &Page) -> Result<RotationAssignmentList, Error> {
        let url = with_query(self.url(&["v1", "rotation", "policies", id, "secrets"]), &page.params());
        self.call(Method::GET, url, NO_BODY).await
    }

    pub async fn unassign_rotation(&self, id: &str, secret_path: &str) -> Result<(), Error> {
        let url = self.url(&["v1", "rotation", "policies", id, "secrets", secret_path]);
        self.call_empty(Method::DELETE, url, NO_BODY).await
    }

    /// `POST /v1/rotation/policies/{id}/rotate`: the named secrets (none: all) due now.
    pub async fn force_rotation(
        &self,
        id: &str,
        secret_paths: &[String],
    ) -> Result<ForceRotationResponse, Error> {
        let req = ForceRotationRequest { secret_paths: secret_paths.to_vec() };
        self.call(Method::POST, self.url(&["v1", "rotation", "policies", id, "rotate"]), Some(&req)).await
    }

    pub async fn stale_readers(&self, id: &str, secret_path: &str) -> Result<StaleReaders, Error> {
        let url = self.url(&["v1", "rotation", "policies", id, "secrets", secret_path, "readers"]);
        self.call(Method::GET, url, NO_BODY).await
    }
}
