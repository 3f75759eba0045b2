use std::sync::Arc;

use scaivault_api::{
    DestroyRequest, DestroyResponse, PatchMetadataRequest, SecretList, SecretListItem, SecretResponse,
    SecretVersionInfo, SecretVersions, SecretWritten, VersionState, WriteSecretRequest,
};
use scaivault_crypto::{SealContext, SecretBytes, chain_hash, random_id};
use scaivault_domain::{Permission, Scope, SecretPath, SecretType, Version, validate_secret_data};
use scaivault_events::EventType;
use scaivault_store::{
    AuditAppend, EventsFnRef, NewEvent, SecretListQuery, SecretSummary, SecretVersionRow, StoreError,
    StoredSecret, WriteEffects, WriteSecret,
};

use crate::audit::{AuditEvent, WriteAudit, audit_entry};
use crate::cache::{invalidating, secret_key};
use crate::federation::MountsHeld;
use crate::paging::{MAX_LIMIT, decode_number_cursor, encode_cursor, limit, open_cursor, seal_cursor};
use crate::{CoreError, Principal, Space, Vault};

/// A secret's `data`, serialised, may not exceed this.
pub const MAX_SECRET_DATA_BYTES: usize = 512 * 1024;
const MAX_VERSIONS_LIMIT: u32 = 1000;

impl From<scaivault_domain::PathError> for CoreError {
    fn from(e: scaivault_domain::PathError) -> Self {
        CoreError::InvalidPath(format!("invalid secret path: {e}"))
    }
}

fn check_max_versions(n: Option<u32>) -> Result<(), CoreError> {
    match n {
        Some(n) if !(1..=MAX_VERSIONS_LIMIT).contains(&n) => Err(CoreError::InvalidRequest(format!(
            "max_versions must be between 1 and {MAX_VERSIONS_LIMIT}, got {n}"
        ))),
        _ => Ok(()),
    }
}

fn list_item(h: SecretSummary) -> SecretListItem {
    SecretListItem {
        path: h.path,
        secret_type: h.secret_type,
        current_version: h.current_version,
        metadata: h.metadata,
        updated_at: h.updated_at,
    }
}

impl Vault {
    fn version_state(&self, v: &SecretVersionRow) -> VersionState {
        match (v.destroyed_at, v.expires_at) {
            (Some(_), _) => VersionState::Destroyed,
            (None, Some(exp)) if exp <= self.clock.now() => VersionState::Expired,
            (None, Some(_)) => VersionState::Grace,
            (None, None) => VersionState::Active,
        }
    }

    /// `PUT /v1/secrets/{path}`: a new version, sealed under a fresh data key bound to tenant, path
    /// and the version storage assigns.
    pub async fn write_secret(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
        req: WriteSecretRequest,
        audit: Option<WriteAudit>,
    ) -> Result<(SecretWritten, bool), CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsWrite, Permission::Write, path).await?;
        if let Some(metadata) = &req.metadata {
            metadata.check()?;
        }
        let _mounts = match space {
            Space::Tenant => {
                let (held, backend) = self.federated_for_change(&ns, path).await?;
                if let Some(backend) = backend.filter(|b| b.write_through) {
                    return self.write_through(principal, &ns, &backend, path, req, audit).await;
                }
                Some(held)
            }
            Space::Partner => None,
        };
        self.write_version(principal, &ns, path, req, audit).await
    }

    /// A new version in namespace `ns`, already authorised (or written by the system). Completes a
    /// rotation that was waiting for it.
    pub(crate) async fn write_version(
        &self,
        principal: &Principal,
        ns: &str,
        path: &SecretPath,
        mut req: WriteSecretRequest,
        audit: Option<WriteAudit>,
    ) -> Result<(SecretWritten, bool), CoreError> {
        let checked = self.checked_plaintext(ns, path, &mut req).await?;
        self.write_checked(principal, ns, path, req, checked, audit).await
    }

    /// Checks a write's options and data (size, and shape for its type), and answers the data as
    /// it will be sealed. `req.data` is taken.
    pub(crate) async fn checked_plaintext(
        &self,
        ns: &str,
        path: &SecretPath,
        req: &mut WriteSecretRequest,
    ) -> Result<Checked, CoreError> {
        check_max_versions(req.options.as_ref().and_then(|o| o.max_versions))?;
        let data = serde_json::Value::Object(std::mem::take(&mut req.data));
        let plaintext = SecretBytes::new(
            serde_json::to_vec(&data).map_err(|e| CoreError::Internal(format!("serialising data: {e}")))?,
        );
        if plaintext.len() > MAX_SECRET_DATA_BYTES {
            return Err(CoreError::PayloadTooLarge(format!(
                "secret data is {} bytes; the limit is {MAX_SECRET_DATA_BYTES}",
                plaintext.len()
            )));
        }
        let mut stored_type = None;
        let effective_type = match req.secret_type {
            Some(t) => t,
            // Only a later write without a type and with non-string values needs the stored type.
            None if data.as_object().is_some_and(|o| o.values().any(|v| !v.is_string())) => {
                // A soft-deleted secret keeps its type when a write revives it, so it is checked too.
                let t = self
                    .store
                    .secret_head(ns, path.as_str())
                    .await?
                    .map_or_else(SecretType::default, |h| h.secret_type);
                *stored_type.insert(t)
            }
            None => SecretType::default(),
        };
        validate_secret_data(effective_type, &data).map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
        Ok(Checked { plaintext, stored_type })
    }

    /// [`Vault::write_version`] of data already checked by [`Vault::checked_plaintext`].
    pub(crate) async fn write_checked(
        &self,
        principal: &Principal,
        ns: &str,
        path: &SecretPath,
        req: WriteSecretRequest,
        checked: Checked,
        audit: Option<WriteAudit>,
    ) -> Result<(SecretWritten, bool), CoreError> {
        let Checked { plaintext, stored_type } = checked;
        let actor = principal.actor();
        let tenant = ns;
        // The write and its audit record commit in one transaction, or neither does.
        let audit_id = random_id("aud_")?;
        let audit_time = self.clock.now();
        let build = audit.as_ref().map(|a| {
            let audit_id = &audit_id;
            move |version: u64, created: bool| {
                let event = AuditEvent {
                    action: a.action.clone(),
                    secret_path: Some(a.secret_path.clone()),
                    version: Some(version),
                    resource_id: None,
                    subject: None,
                    outcome: "success",
                    status_code: if created { a.status_created } else { a.status_updated },
                };
                audit_entry(principal, &a.request, event, audit_id.clone(), audit_time)
            }
        });
        let sign = self.audit_signer();
        let audit_append = build.as_ref().map(|build| AuditAppend { build, chain: &chain_hash, sign: &sign });
        // The events (and their deliveries) commit with the write too; kept to publish afterwards.
        let emitter = self.emitter(tenant).await?;
        let emitted = std::sync::Mutex::new(Vec::<NewEvent>::new());
        let event_time = self.clock.now();
        let rotation = self.rotation_completion(tenant, path).await?;
        let build_events = |version: u64, created: bool, rotated: bool| {
            let event_type = if created { EventType::SecretCreated } else { EventType::SecretUpdated };
            let to_store = |e: CoreError| StoreError::Backend(e.to_string());
            let mut events = vec![
                emitter
                    .event(
                        event_type,
                        Some(path.as_str()),
                        serde_json::json!({ "version": version }),
                        event_time,
                    )
                    .map_err(to_store)?,
            ];
            if let (true, Some((completion, policy))) = (rotated, &rotation) {
                let data = crate::rotation::rotated_event_data(version, completion, policy);
                events.push(
                    emitter
                        .event_to(
                            EventType::SecretRotated,
                            Some(path.as_str()),
                            data,
                            event_time,
                            &policy.webhook_ids,
                        )
                        .map_err(to_store)?,
                );
            }
            if let Ok(mut slot) = emitted.lock() {
                slot.clone_from(&events);
            }
            Ok(events)
        };
        let events_fn = EventsFnRef(&build_events);
        let effects = WriteEffects {
            audit: audit_append.as_ref(),
            events: Some(&events_fn),
            rotation: rotation.as_ref().map(|(c, _)| c),
        };
        let writing = self.keys.with_budget(|| {
            let write = WriteSecret {
                tenant,
                path,
                secret_type: req.secret_type,
                checked_type: stored_type,
                metadata: req.metadata.clone(),
                max_versions: req.options.as_ref().and_then(|o| o.max_versions),
                cas: req.cas,
                created_by: &actor,
                now: self.clock.now(),
            };
            let plaintext = &plaintext;
            async move {
                let seal = |version: u64| {
                    self.keys.seal(&SealContext { tenant, path: path.as_str(), version }, plaintext.expose())
                };
                self.store.write_secret(write, &seal, effects).await
            }
        });
        let outcome = invalidating(|| self.caches.secret_changed(ns, path.as_str()), writing).await;
        let outcome = outcome?;
        tracing::debug!(path = %path, version = outcome.version, "secret written");
        self.published(&emitted.into_inner().unwrap_or_default());
        let written = SecretWritten {
            path: outcome.head.path,
            version: outcome.version,
            created_at: outcome.created_at,
            secret_type: outcome.head.secret_type,
            metadata: outcome.head.metadata,
        };
        Ok((written, outcome.created))
    }

    /// `GET /v1/secrets/{path}[?version=N]`
    pub async fn read_secret(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
        version: Option<Version>,
    ) -> Result<SecretResponse, CoreError> {
        let ns = self.authorize_secret(principal, space, Scope::SecretsRead, Permission::Read, path).await?;
        if space == Space::Tenant
            && let Some(backend) = self.federated(&ns, path).await?
            && backend.mode_for(path) == scaivault_federation::Mode::Proxy
        {
            return self.federated_read(&ns, &backend, path, version).await;
        }
        self.read_version(&ns, path, version).await
    }

    /// A secret as a read answers it, for the system's own use (a federation backend's credential).
    pub(crate) async fn read_secret_unchecked_response(
        &self,
        ns: &str,
        path: &SecretPath,
    ) -> Result<SecretResponse, CoreError> {
        self.read_version(ns, path, None).await
    }

    /// Refuses a change under a proxy-mode federation backend's mount (tenant secrets only); the
    /// guard holds off this process's backend changes until the change is made.
    async fn refuse_federated_write_in(
        &self,
        space: Space,
        ns: &str,
        path: &SecretPath,
    ) -> Result<Option<MountsHeld>, CoreError> {
        match space {
            Space::Tenant => Ok(Some(self.federated_for_change(ns, path).await?.0)),
            Space::Partner => Ok(None),
        }
    }

    /// The current data of a secret, for the system's own use (automatic rotation).
    pub(crate) async fn read_secret_unchecked(
        &self,
        ns: &str,
        path: &SecretPath,
    ) -> Result<serde_json::Map<String, serde_json::Value>, CoreError> {
        Ok(self.read_version(ns, path, None).await?.data)
    }

    async fn read_version(
        &self,
        ns: &str,
        path: &SecretPath,
        version: Option<Version>,
    ) -> Result<SecretResponse, CoreError> {
        if let Some(v) = version.filter(|v| i64::try_from(v.get()).is_err()) {
            return Err(CoreError::VersionNotFound(v.get()));
        }
        let stored = self.stored_secret(ns, path, version).await?;
        let row = &stored.version;
        if version.is_some() && self.version_state(row) == VersionState::Expired {
            return Err(CoreError::SecretExpired(row.version));
        }
        let sealed = row.sealed.as_ref().ok_or(CoreError::VersionNotFound(row.version))?;
        let ctx = SealContext { tenant: ns, path: path.as_str(), version: row.version };
        let plaintext = self.keys.open_sealed(&ctx, sealed).await.inspect_err(|_| {
            tracing::error!(path = %path, version = row.version, "stored secret failed its integrity check");
        })?;
        let data = match serde_json::from_slice(plaintext.expose()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(CoreError::Internal("decrypted data is not a JSON object".into())),
        };
        Ok(SecretResponse {
            path: stored.head.path.clone(),
            version: row.version,
            data,
            secret_type: stored.head.secret_type,
            metadata: stored.head.metadata.clone(),
            created_at: row.created_at,
            created_by: row.created_by.clone(),
            // The current version never expires.
            expires_at: if row.version == stored.head.current_version { None } else { row.expires_at },
        })
    }

    /// A secret's head and one version, sealed. The current version comes from the cache when it
    /// may be used; a named version is always read from storage.
    async fn stored_secret(
        &self,
        ns: &str,
        path: &SecretPath,
        version: Option<Version>,
    ) -> Result<Arc<StoredSecret>, CoreError> {
        if let Some(v) = version {
            return Ok(Arc::new(self.store.read_secret(ns, path.as_str(), Some(v.get())).await?));
        }
        let fetched = self
            .caches
            .through(&self.caches.secrets, secret_key(ns, path.as_str()), || async {
                Ok::<_, CoreError>(Some(Arc::new(self.store.read_secret(ns, path.as_str(), None).await?)))
            })
            .await?;
        fetched.map(|(stored, _)| stored).ok_or(CoreError::from(StoreError::SecretNotFound))
    }

    /// `GET /v1/secrets/{path}/versions`
    pub async fn secret_versions(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SecretVersions, CoreError> {
        let ns = self.authorize_secret(principal, space, Scope::SecretsList, Permission::List, path).await?;
        let limit = limit(limit_param)?;
        let before = decode_number_cursor("versions", cursor)?;
        // A secret keeps at most `max_versions` (≤ 1,000) versions: they are paged here, newest first.
        let (head, rows) = self.store.list_versions(ns.as_str(), path.as_str()).await?;
        let mut page: Vec<&SecretVersionRow> =
            rows.iter().filter(|v| before.is_none_or(|b| v.version < b)).collect();
        page.sort_unstable_by_key(|v| std::cmp::Reverse(v.version));
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next_cursor =
            more.then(|| page.last().map(|v| encode_cursor("versions", &v.version.to_string()))).flatten();
        let versions = page
            .into_iter()
            .map(|v| SecretVersionInfo {
                version: v.version,
                is_current: v.version == head.current_version,
                created_at: v.created_at,
                created_by: v.created_by.clone(),
                expires_at: v.expires_at,
                state: if v.version == head.current_version && v.destroyed_at.is_none() {
                    VersionState::Active
                } else {
                    self.version_state(v)
                },
            })
            .collect();
        Ok(SecretVersions { path: head.path, current_version: head.current_version, versions, next_cursor })
    }

    /// `PATCH /v1/secrets/{path}/metadata`
    pub async fn update_metadata(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
        req: PatchMetadataRequest,
    ) -> Result<SecretListItem, CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsWrite, Permission::Write, path).await?;
        let _mounts = self.refuse_federated_write_in(space, &ns, path).await?;
        check_max_versions(req.max_versions)?;
        // Only the fields this request sets are checked: metadata stored before a limit existed
        // stays editable field by field.
        scaivault_domain::SecretMetadata {
            description: req.description.clone(),
            tags: req.tags.clone().unwrap_or_default(),
            owner: req.owner.clone(),
            custom: req.custom.clone().unwrap_or_default(),
        }
        .check()?;
        let tenant = ns.as_str();
        let touches_metadata =
            req.description.is_some() || req.tags.is_some() || req.owner.is_some() || req.custom.is_some();
        let metadata = if touches_metadata {
            let current = self.store.list_versions(tenant, path.as_str()).await?.0.metadata;
            Some(scaivault_domain::SecretMetadata {
                description: req.description.or(current.description),
                tags: req.tags.unwrap_or(current.tags),
                owner: req.owner.or(current.owner),
                custom: req.custom.unwrap_or(current.custom),
            })
        } else {
            None
        };
        let data = serde_json::json!({ "metadata_only": true });
        let head = self
            .with_events(tenant, EventType::SecretUpdated, path, data, |events| async move {
                let head = self
                    .store
                    .update_metadata(
                        tenant,
                        path.as_str(),
                        metadata,
                        req.max_versions,
                        self.clock.now(),
                        &events,
                    )
                    .await?;
                Ok((head, events))
            })
            .await?;
        Ok(list_item(head.into()))
    }

    /// `GET /v1/secrets?prefix=&tag=&limit=&cursor=`: only paths the caller may list, never values.
    pub async fn list_secrets(
        &self,
        principal: &Principal,
        space: Space,
        prefix: Option<&str>,
        tag: Option<&str>,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SecretList, CoreError> {
        let (ns, access) = self.list_access(principal, space).await?;
        let limit = limit(limit_param)?;
        if tag == Some("") {
            return Err(CoreError::InvalidRequest("tag must not be empty".into()));
        }
        let mut after = open_cursor(&self.cursor_key, list_name(space), cursor)?;
        let mut secrets = Vec::new();
        // Pages are filled after the per-path permission filter, so a page may take several reads;
        // it ends at the path that fills it, and the cursor continues right after that path. Reads
        // grow up to the largest page, and one request reads at most `LIST_SCAN_BUDGET` paths (or
        // one page): a caller who may see few of many paths gets a short page, even an empty one,
        // with the cursor to go on from, rather than one request scanning the whole tenant.
        let cursor_after =
            |path: Option<&str>| path.map(|a| seal_cursor(&self.cursor_key, list_name(space), a)).transpose();
        let budget = LIST_SCAN_BUDGET.max(limit);
        let mut scanned = 0;
        let mut read = limit;
        loop {
            let batch = self
                .store
                .list_secrets(
                    ns.as_str(),
                    SecretListQuery { prefix, tag, after: after.as_deref(), limit: read },
                )
                .await?;
            let exhausted = (batch.len() as u32) < read;
            scanned += batch.len() as u32;
            read = (read * 2).min(MAX_LIMIT).min(budget - scanned.min(budget)).max(1);
            let count = batch.len();
            for (i, head) in batch.into_iter().enumerate() {
                after = Some(head.path.clone());
                if SecretPath::parse(&head.path).is_ok_and(|p| access.allows(&p)) {
                    secrets.push(list_item(head));
                }
                if secrets.len() as u32 == limit {
                    let nothing_after = exhausted && i + 1 == count;
                    let next_cursor = if nothing_after { None } else { cursor_after(after.as_deref())? };
                    return Ok(SecretList { secrets, next_cursor });
                }
            }
            if exhausted {
                return Ok(SecretList { secrets, next_cursor: None });
            }
            if scanned >= budget {
                return Ok(SecretList { secrets, next_cursor: cursor_after(after.as_deref())? });
            }
        }
    }

    /// `DELETE /v1/secrets/{path}`: soft delete, history kept for `undelete`.
    pub async fn delete_secret(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
    ) -> Result<(), CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsDelete, Permission::Delete, path).await?;
        let _mounts = self.refuse_federated_write_in(space, &ns, path).await?;
        let tenant = ns.as_str();
        self.with_events(tenant, EventType::SecretDeleted, path, serde_json::json!({}), |events| async move {
            self.store.soft_delete(tenant, path.as_str(), self.clock.now(), &events).await?;
            Ok(((), events))
        })
        .await
    }

    /// `POST /v1/secrets/{path}/undelete`
    pub async fn undelete_secret(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
    ) -> Result<SecretListItem, CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsDelete, Permission::Delete, path).await?;
        let _mounts = self.refuse_federated_write_in(space, &ns, path).await?;
        let tenant = ns.as_str();
        let data = serde_json::json!({ "undeleted": true });
        let head = self
            .with_events(tenant, EventType::SecretUpdated, path, data, |events| async move {
                let (head, restored) =
                    self.store.undelete(tenant, path.as_str(), self.clock.now(), &events).await?;
                Ok((head, if restored { events } else { Vec::new() }))
            })
            .await?;
        Ok(list_item(head.into()))
    }

    /// `POST /v1/secrets/{path}/destroy`: erases ciphertext for good.
    pub async fn destroy_versions(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
        req: DestroyRequest,
    ) -> Result<DestroyResponse, CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsDelete, Permission::Delete, path).await?;
        let _mounts = self.refuse_federated_write_in(space, &ns, path).await?;
        if req.versions.as_ref().is_some_and(|v| v.is_empty() || v.contains(&0)) {
            return Err(CoreError::InvalidRequest(
                "versions must be a non-empty list of version numbers".into(),
            ));
        }
        let tenant = ns.as_str();
        // The event names the versions actually erased (made inside the store's transaction), and
        // a destroy that erased nothing sends none.
        let emitter = self.emitter(tenant).await?;
        let now = self.clock.now();
        let emitted = std::sync::Mutex::new(Vec::<NewEvent>::new());
        let build_events = |destroyed: &[u64]| {
            let data = serde_json::json!({ "destroyed_versions": destroyed });
            let event = emitter
                .event(EventType::SecretDeleted, Some(path.as_str()), data, now)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            if let Ok(mut slot) = emitted.lock() {
                *slot = vec![event.clone()];
            }
            Ok(vec![event])
        };
        let destroying =
            self.store.destroy_versions(tenant, path.as_str(), req.versions.as_deref(), now, &build_events);
        let destroyed =
            invalidating(|| self.caches.secret_changed(tenant, path.as_str()), destroying).await?;
        self.published(&emitted.into_inner().unwrap_or_default());
        Ok(DestroyResponse { path: path.to_string(), destroyed_versions: destroyed })
    }
}

/// A write's data, checked and serialised, and the stored type it was checked against (when the
/// write names none and its values needed one).
pub(crate) struct Checked {
    plaintext: SecretBytes,
    stored_type: Option<SecretType>,
}

/// The most paths one list request reads when the caller may see few of them (or one page, if
/// larger).
const LIST_SCAN_BUDGET: u32 = 1000;

/// The name a secret list's cursors carry: tenant and partner lists do not take each other's.
fn list_name(space: Space) -> &'static str {
    match space {
        Space::Tenant => "secrets",
        Space::Partner => "partner_secrets",
    }
}
