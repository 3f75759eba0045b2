//! Federation sync mode: the mapped part of a backend pulled into local storage on a schedule (and
//! on `POST …/sync`), writes sent to the backend first with `write_through`, and conflicts settled
//! by the backend's `conflict_resolution` or flagged for `POST …/conflicts/resolve`.
//!
//! Each path's decision is [`scaivault_federation::decide`]; this module carries it out. Versions a
//! sync copies in are ordinary local versions written by `system:federation` (audited as
//! `federation.sync.write`, with the usual `secret.*` events). One replica syncs a backend at a
//! time: a run holds a lease on the backend's schedule row.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scaivault_api::{
    ResolveConflictRequest, SecretResponse, SecretWritten, SkippedPath, SyncConflict, SyncConflictList,
    SyncReport, WriteSecretRequest,
};
use scaivault_crypto::random_id;
use scaivault_domain::{Permission, Scope, SecretMetadata, SecretPath};
use scaivault_events::EventType;
use scaivault_federation::{
    ConflictResolution, FederationError, LastSync, MAX_LISTED, Mode, RemoteVersion, SyncAction, decide,
};
use scaivault_store::{StoreError, SyncPathRecord, SyncRunRecord};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::audit::{RequestInfo, WriteAudit};
use crate::federation::{Client, Mounted, MountsHeld, bad, mounted, not_found};
use crate::{CoreError, Principal, Vault};

/// How long one run may hold a backend before another replica may take it over.
const SYNC_LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);
/// Due backends one scheduler pass takes.
const DUE_BATCH: u32 = 16;
/// A sync waits this long after a failure before it tries again, unless its interval is shorter.
const RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

type Data = Map<String, Value>;

/// One run's shared pieces.
struct Run<'a> {
    tenant: &'a str,
    backend: &'a Mounted,
    client: Client,
    system: Principal,
    request: RequestInfo,
}

/// What one path's sync came to.
enum PathOutcome {
    Synced,
    Unchanged,
    /// A conflict, and whether settling it changed a side.
    Conflict(SyncConflict, bool),
}

fn resolution_name(r: ConflictResolution) -> &'static str {
    match r {
        ConflictResolution::BackendWins => "backend_wins",
        ConflictResolution::LocalWins => "local_wins",
        ConflictResolution::Manual => "manual",
    }
}

/// Failures that stop the whole run (the backend or the store is down), as against one path's.
fn stops_the_run(e: &CoreError) -> bool {
    matches!(e, CoreError::BackendUnavailable(_) | CoreError::Unavailable(_) | CoreError::Internal(_))
}

fn not_sync_mode(id: &str) -> CoreError {
    CoreError::Conflict(format!("federation backend {id} is in proxy mode: only sync mode syncs"))
}

impl Vault {
    /// The backend call `f`, timed into the backend's status.
    async fn timed<T>(
        &self,
        backend: &Mounted,
        call: impl std::future::Future<Output = Result<T, FederationError>>,
    ) -> Result<T, CoreError> {
        let started = Instant::now();
        let result = call.await;
        self.federation.note(&backend.id, started, result.as_ref().map(|_| ()));
        Ok(result?)
    }

    /// `POST /v1/federation/backends/{id}/sync`: one sync now; `409` while another runs. The run
    /// goes on its own task: a client that goes away does not cut it short with its lease held.
    pub async fn sync_federation_backend(
        self: &Arc<Self>,
        principal: &Principal,
        id: &str,
    ) -> Result<SyncReport, CoreError> {
        self.authorize(principal, Scope::FederationWrite, None).await?;
        let record = self.store.get_federation_backend(&principal.tenant, id).await.map_err(not_found)?;
        let backend = mounted(&record)?;
        if !backend.syncs() {
            return Err(not_sync_mode(id));
        }
        let (vault, tenant) = (self.clone(), principal.tenant.clone());
        let run = tokio::spawn(async move { vault.run_sync(&tenant, &backend, false).await });
        run.await.map_err(|e| CoreError::Internal(format!("the sync task failed: {e}")))??.ok_or_else(|| {
            CoreError::Conflict(format!("a sync of federation backend {id} is already running"))
        })
    }

    /// `GET /v1/federation/backends/{id}/conflicts`
    pub async fn list_sync_conflicts(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<SyncConflictList, CoreError> {
        self.authorize(principal, Scope::FederationRead, None).await?;
        self.store.get_federation_backend(&principal.tenant, id).await.map_err(not_found)?;
        let conflicts = self
            .store
            .list_sync_paths(&principal.tenant, id)
            .await?
            .into_iter()
            .filter(|s| s.conflict)
            .map(|s| SyncConflict {
                path: s.path,
                remote_updated_at: s.remote_at,
                local_updated_at: s.local_at,
                resolution: "manual".into(),
            })
            .collect();
        Ok(SyncConflictList { conflicts })
    }

    /// `POST /v1/federation/backends/{id}/conflicts/resolve`: `backend` copies the backend's
    /// current value in; `local` keeps the local one (and, with `write_through`, writes it to the
    /// backend). Either way the path is synced again from then on.
    pub async fn resolve_sync_conflict(
        &self,
        principal: &Principal,
        id: &str,
        req: ResolveConflictRequest,
    ) -> Result<(), CoreError> {
        let path = SecretPath::parse(&req.path)?;
        self.authorize(principal, Scope::FederationWrite, Some((Permission::Write, &path))).await?;
        let tenant = principal.tenant.as_str();
        let record = self.store.get_federation_backend(tenant, id).await.map_err(not_found)?;
        let backend = mounted(&record)?;
        if backend.mode_for(&path) != Mode::Sync {
            return Err(not_sync_mode(id));
        }
        let state = self.store.get_sync_path(tenant, id, path.as_str()).await?;
        if !state.as_ref().is_some_and(|s| s.conflict) {
            return Err(CoreError::NotFound("sync conflict"));
        }
        let name = backend.mapping.name_for(&path)?.ok_or_else(|| unmapped(&backend, &path))?;
        let run = self.start_run(tenant, &backend).await?;
        let remote = self.timed(&backend, run.client.versions(&name)).await?;
        let current = remote.last().ok_or(CoreError::SecretNotFound)?;
        match req.winner.as_str() {
            "backend" => {
                let secret = self.timed(&backend, run.client.read_version(&name, &current.id)).await?;
                let version = self.sync_write(&run, &path, secret.data, None, None).await?;
                self.save_state(&run, &path, &current.id, version).await
            }
            "local" => {
                let local = self.read_secret_unchecked_response(tenant, &path).await?;
                let remote_id = if backend.write_through {
                    self.timed(&backend, run.client.write(&name, &local.data)).await?.id
                } else {
                    current.id.clone()
                };
                self.save_state(&run, &path, &remote_id, local.version).await
            }
            other => Err(bad("winner", format!("'{other}' is neither 'local' nor 'backend'"))),
        }
    }

    /// A `PUT` under a sync-mode backend with `write_through`: checked, written to the backend, and
    /// stored locally only once the backend accepted it.
    pub(crate) async fn write_through(
        &self,
        principal: &Principal,
        ns: &str,
        backend: &Arc<Mounted>,
        path: &SecretPath,
        mut req: WriteSecretRequest,
        audit: Option<WriteAudit>,
    ) -> Result<(SecretWritten, bool), CoreError> {
        let name = backend.mapping.name_for(path)?.ok_or_else(|| unmapped(backend, path))?;
        let _one_at_a_time = self.federation.write_through_turn(ns, path).await;
        if let Some(cas) = req.cas {
            let current = match self.store.list_versions(ns, path.as_str()).await {
                Ok((head, _)) => head.current_version,
                Err(StoreError::SecretNotFound) => 0,
                Err(e) => return Err(e.into()),
            };
            if current != cas {
                return Err(StoreError::CasMismatch { current }.into());
            }
        }
        let data = req.data.clone();
        let checked = self.checked_plaintext(ns, path, &mut req).await?;
        let client = self.federation_client(ns, backend).await?;
        let remote = self.timed(backend, client.write(&name, &data)).await?;
        drop(data);
        let written = self.write_checked(principal, ns, path, req, checked, audit).await?;
        let state = SyncPathRecord {
            tenant: ns.to_owned(),
            backend_id: backend.id.clone(),
            path: path.to_string(),
            remote_version: remote.id,
            local_version: written.0.version,
            conflict: false,
            remote_at: None,
            local_at: None,
            updated_at: self.clock.now(),
        };
        self.store.put_sync_path(&state, backend.updated_at).await?;
        Ok(written)
    }

    /// One sync of `backend` if no other holds it (and, when `scheduled`, if it is due): the run's
    /// outcome recorded, its events sent. `None` when it did not run.
    async fn run_sync(
        &self,
        tenant: &str,
        backend: &Mounted,
        scheduled: bool,
    ) -> Result<Option<SyncReport>, CoreError> {
        let now = self.clock.now();
        if !self.store.claim_sync_run(tenant, &backend.id, now, now + SYNC_LEASE, scheduled).await? {
            return Ok(None);
        }
        let started = Instant::now();
        let result = self.sync_once(tenant, backend).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let previous = self.store.get_sync_run(tenant, &backend.id).await?;
        let failures = previous.as_ref().map_or(0, |r| r.consecutive_failures);
        let finished = self.clock.now();
        let interval = backend.sync_interval.as_chrono();
        let (run, event_type, data) = match &result {
            Ok(report) => {
                let report_json =
                    serde_json::to_string(report).map_err(|e| CoreError::Internal(e.to_string()))?;
                let run = SyncRunRecord {
                    tenant: tenant.to_owned(),
                    backend_id: backend.id.clone(),
                    next_sync_at: finished + interval,
                    lease_until: None,
                    last_sync_at: Some(report.started_at),
                    last_duration_ms: Some(duration_ms),
                    report: Some(report_json),
                    consecutive_failures: 0,
                };
                let data = serde_json::json!({
                    "backend_id": backend.id,
                    "synced": report.synced,
                    "unchanged": report.unchanged,
                    "skipped": report.skipped.len(),
                    "conflicts": report.conflicts.len(),
                    "duration_ms": duration_ms,
                });
                (run, EventType::FederationSyncCompleted, data)
            }
            Err(e) => {
                let run = SyncRunRecord {
                    next_sync_at: finished + interval.min(RETRY_AFTER),
                    lease_until: None,
                    consecutive_failures: failures.saturating_add(1),
                    ..previous.clone().unwrap_or(SyncRunRecord {
                        tenant: tenant.to_owned(),
                        backend_id: backend.id.clone(),
                        next_sync_at: finished,
                        lease_until: None,
                        last_sync_at: None,
                        last_duration_ms: None,
                        report: None,
                        consecutive_failures: 0,
                    })
                };
                let data = serde_json::json!({
                    "backend_id": backend.id,
                    "error": e.detail(),
                    "consecutive_failures": run.consecutive_failures,
                });
                (run, EventType::FederationSyncFailed, data)
            }
        };
        self.store.finish_sync_run(&run).await?;
        let outcome = if result.is_ok() { "completed" } else { "failed" };
        *self.federation.sync_results.lock().expect("sync results lock").entry(outcome).or_default() += 1;
        let emitter = self.emitter(tenant).await?;
        let mut events = vec![emitter.event(event_type, None, data, finished)?];
        if run.consecutive_failures == backend.unreachable_after {
            let data = serde_json::json!({
                "backend_id": backend.id,
                "consecutive_failures": run.consecutive_failures,
                "error": result.as_ref().err().map(CoreError::detail),
            });
            events.push(emitter.event(EventType::FederationBackendUnreachable, None, data, finished)?);
        }
        self.store.append_events(&events).await?;
        self.published(&events);
        match &result {
            Ok(r) => tracing::info!(backend = %backend.id, synced = r.synced, unchanged = r.unchanged,
                skipped = r.skipped.len(), conflicts = r.conflicts.len(), duration_ms, "federation sync completed"),
            Err(e) => tracing::warn!(backend = %backend.id, error = %e.detail(), "federation sync failed"),
        }
        result.map(Some)
    }

    /// The client and the identity a run writes as.
    async fn start_run<'a>(&self, tenant: &'a str, backend: &'a Mounted) -> Result<Run<'a>, CoreError> {
        Ok(Run {
            tenant,
            backend,
            client: self.federation_client(tenant, backend).await?,
            system: Principal::system_named(tenant, "federation"),
            request: RequestInfo { request_id: random_id("syn_")?, client_ip: None, user_agent: None },
        })
    }

    async fn sync_once(&self, tenant: &str, backend: &Mounted) -> Result<SyncReport, CoreError> {
        let started_at = self.clock.now();
        let started = Instant::now();
        let run = self.start_run(tenant, backend).await?;
        let mut names = BTreeSet::new();
        for prefix in backend.sync_prefixes() {
            names.extend(self.timed(backend, run.client.list(&prefix, MAX_LISTED)).await?);
            if names.len() > MAX_LISTED {
                return Err(FederationError::Unsupported(format!(
                    "the backend holds more than {MAX_LISTED} secrets under the mapping; narrow the path_mapping"
                ))
                .into());
            }
        }
        let mut states: HashMap<String, SyncPathRecord> = self
            .store
            .list_sync_paths(tenant, &backend.id)
            .await?
            .into_iter()
            .map(|s| (s.path.clone(), s))
            .collect();
        let mut report = SyncReport {
            started_at,
            duration_ms: 0,
            synced: 0,
            unchanged: 0,
            skipped: Vec::new(),
            conflicts: Vec::new(),
        };
        for name in names {
            let path = match backend.mapping.source(&name) {
                // Paths of rules in proxy mode are read live, never stored.
                Ok(Some(path)) if backend.mode_for(&path) != Mode::Sync => continue,
                Ok(Some(path)) => path,
                Ok(None) => continue,
                Err(e) => {
                    tracing::info!(backend = %backend.id, name = %name, reason = %e, "federation sync skipped a name");
                    report.skipped.push(SkippedPath { path: name, reason: e.to_string() });
                    continue;
                }
            };
            let state = states.remove(path.as_str());
            match self.sync_path(&run, &name, &path, state.as_ref()).await {
                Ok(PathOutcome::Synced) => report.synced += 1,
                Ok(PathOutcome::Unchanged) => report.unchanged += 1,
                Ok(PathOutcome::Conflict(c, changed)) => {
                    report.synced += u64::from(changed);
                    report.conflicts.push(c);
                }
                Err(e) if stops_the_run(&e) => return Err(e),
                Err(e) => report.skipped.push(SkippedPath { path: path.to_string(), reason: e.detail() }),
            }
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    async fn sync_path(
        &self,
        run: &Run<'_>,
        name: &str,
        path: &SecretPath,
        state: Option<&SyncPathRecord>,
    ) -> Result<PathOutcome, CoreError> {
        let remote = self.timed(run.backend, run.client.versions(name)).await?;
        // The local side as it stands now: its current version (deleted or not) is what the pull
        // writes after, so a local write made while the backend is read is never overwritten.
        let head = self.store.secret_head(run.tenant, path.as_str()).await?;
        let base = head.as_ref().map_or(0, |h| h.current_version);
        let local =
            head.filter(|h| h.deleted_at.is_none() && h.current_version > 0).map(|h| h.current_version);
        let last = state.map(|s| LastSync {
            remote: s.remote_version.clone(),
            local: s.local_version,
            conflict: s.conflict,
        });
        match decide(last.as_ref(), &remote, local) {
            SyncAction::Unchanged => Ok(PathOutcome::Unchanged),
            SyncAction::Flagged => Ok(PathOutcome::Conflict(
                SyncConflict {
                    path: path.to_string(),
                    remote_updated_at: state.and_then(|s| s.remote_at),
                    local_updated_at: state.and_then(|s| s.local_at),
                    resolution: "manual".into(),
                },
                false,
            )),
            SyncAction::Pull(ids) => {
                self.pull(run, name, path, &ids, base, local.is_none()).await?;
                Ok(PathOutcome::Synced)
            }
            SyncAction::Diverged => self.settle(run, name, path, &remote, state).await,
        }
    }

    /// Copies the backend versions `ids` in, oldest first, and records the last that landed (also
    /// when a later one failed, so the next sync goes on from there).
    async fn pull(
        &self,
        run: &Run<'_>,
        name: &str,
        path: &SecretPath,
        ids: &[String],
        base: u64,
        creating: bool,
    ) -> Result<(), CoreError> {
        let mut landed: Option<(&str, u64)> = None;
        let mut failed = None;
        for (i, id) in ids.iter().enumerate() {
            // Each version goes in only on top of the one before it: a local write in between
            // stops the pull (the path is reported skipped, and the next sync sees both sides moved).
            let after = landed.map_or(base, |(_, v)| v);
            let copied = async {
                let secret = self.timed(run.backend, run.client.read_version(name, id)).await?;
                // Custom metadata comes across when the secret is created here; later it is ours.
                let metadata = (creating && i == 0 && !secret.custom.is_empty())
                    .then(|| SecretMetadata { custom: secret.custom, ..SecretMetadata::default() });
                self.sync_write(run, path, secret.data, metadata, Some(after)).await
            };
            match copied.await {
                Ok(version) => landed = Some((id, version)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some((id, version)) = landed {
            self.save_state(run, path, id, version).await?;
        }
        failed.map_or(Ok(()), Err)
    }

    /// Both sides changed: the same value is simply recorded; otherwise `conflict_resolution`.
    async fn settle(
        &self,
        run: &Run<'_>,
        name: &str,
        path: &SecretPath,
        remote: &[RemoteVersion],
        state: Option<&SyncPathRecord>,
    ) -> Result<PathOutcome, CoreError> {
        let current = remote.last().ok_or(CoreError::SecretNotFound)?;
        let theirs = self.timed(run.backend, run.client.read_version(name, &current.id)).await?;
        let ours: Option<SecretResponse> = match self.read_secret_unchecked_response(run.tenant, path).await {
            Ok(s) => Some(s),
            Err(CoreError::SecretNotFound | CoreError::VersionNotFound(_) | CoreError::SecretExpired(_)) => {
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(ours) = &ours
            && ours.data == theirs.data
        {
            self.save_state(run, path, &current.id, ours.version).await?;
            return Ok(PathOutcome::Unchanged);
        }
        let conflict = SyncConflict {
            path: path.to_string(),
            remote_updated_at: current.created_at,
            local_updated_at: ours.as_ref().map(|s| s.created_at),
            resolution: resolution_name(run.backend.resolution).into(),
        };
        match run.backend.resolution {
            ConflictResolution::BackendWins => {
                let version = self.sync_write(run, path, theirs.data, None, None).await?;
                self.save_state(run, path, &current.id, version).await?;
                Ok(PathOutcome::Conflict(conflict, true))
            }
            ConflictResolution::LocalWins => {
                let ours = ours.ok_or_else(|| {
                    CoreError::Conflict(
                        "the local secret is deleted: nothing to write back (local_wins)".into(),
                    )
                })?;
                let written = self.timed(run.backend, run.client.write(name, &ours.data)).await?;
                self.save_state(run, path, &written.id, ours.version).await?;
                Ok(PathOutcome::Conflict(conflict, true))
            }
            ConflictResolution::Manual => {
                let flagged = SyncPathRecord {
                    tenant: run.tenant.to_owned(),
                    backend_id: run.backend.id.clone(),
                    path: path.to_string(),
                    remote_version: state.map_or_else(|| current.id.clone(), |s| s.remote_version.clone()),
                    local_version: state.map_or(0, |s| s.local_version),
                    conflict: true,
                    remote_at: conflict.remote_updated_at,
                    local_at: conflict.local_updated_at,
                    updated_at: self.clock.now(),
                };
                if let Some(_mounts) = self.still_ours(run, path).await? {
                    self.store.put_sync_path(&flagged, run.backend.updated_at).await?;
                }
                tracing::info!(backend = %run.backend.id, path = %path, "federation sync flagged a conflict");
                Ok(PathOutcome::Conflict(conflict, false))
            }
        }
    }

    /// A new local version written by the system for a sync.
    async fn sync_write(
        &self,
        run: &Run<'_>,
        path: &SecretPath,
        data: Data,
        metadata: Option<SecretMetadata>,
        cas: Option<u64>,
    ) -> Result<u64, CoreError> {
        let audit = WriteAudit {
            request: run.request.clone(),
            action: "federation.sync.write".into(),
            secret_path: path.to_string(),
            status_created: 201,
            status_updated: 200,
        };
        let Some(_mounts) = self.still_ours(run, path).await? else {
            return Err(CoreError::Conflict(format!(
                "federation backend {} changed during this sync: '{path}' is left to the next one",
                run.backend.id
            )));
        };
        let req = WriteSecretRequest { data, secret_type: None, metadata, options: None, cas };
        Ok(self.write_version(&run.system, run.tenant, path, req, Some(audit)).await?.0.version)
    }

    /// Whether `path` is still this run's backend's, in sync mode and as configured when the run
    /// began; if so, the guard keeps it so (on this process) until dropped, so what the run stores
    /// for it (a version, a sync state) lands before any change to the backend (which may clear
    /// those states).
    async fn still_ours(&self, run: &Run<'_>, path: &SecretPath) -> Result<Option<MountsHeld>, CoreError> {
        let (held, keeper) = match self.federated_for_change(run.tenant, path).await {
            Ok(found) => found,
            Err(CoreError::ReadOnlyPath(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let same = keeper.is_some_and(|b| b.id == run.backend.id && b.updated_at == run.backend.updated_at);
        Ok(same.then_some(held))
    }

    /// Records what the run knows of `path` (nothing once the backend changed: see `still_ours`).
    async fn save_state(
        &self,
        run: &Run<'_>,
        path: &SecretPath,
        remote: &str,
        local: u64,
    ) -> Result<(), CoreError> {
        let Some(_mounts) = self.still_ours(run, path).await? else { return Ok(()) };
        let state = SyncPathRecord {
            tenant: run.tenant.to_owned(),
            backend_id: run.backend.id.clone(),
            path: path.to_string(),
            remote_version: remote.to_owned(),
            local_version: local,
            conflict: false,
            remote_at: None,
            local_at: None,
            updated_at: self.clock.now(),
        };
        Ok(self.store.put_sync_path(&state, run.backend.updated_at).await?)
    }

    /// One scheduler pass: every due sync-mode backend of every tenant synced once. Returns how
    /// many this process ran.
    pub async fn federation_sync_tick(&self) -> Result<usize, CoreError> {
        let due = self.store.due_sync_runs(self.clock.now(), DUE_BATCH).await?;
        let mut ran = 0;
        for (tenant, id) in due {
            // One backend's trouble (a configuration that no longer loads, say) is logged and the
            // pass goes on: it must not hold up every other tenant's syncs.
            match self.sync_if_due(&tenant, &id).await {
                Ok(true) => ran += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(backend = %id, error = %e.detail(), "federation sync not started"),
            }
        }
        Ok(ran)
    }

    /// The scheduled sync of one due backend; true when a run took place (failed runs included:
    /// they are recorded, with their event, by the run).
    async fn sync_if_due(&self, tenant: &str, id: &str) -> Result<bool, CoreError> {
        let record = match self.store.get_federation_backend(tenant, id).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let backend = mounted(&record)?;
        if !backend.syncs() {
            // Changed since the scheduler's query picked it; that query will not pick it again.
            return Ok(false);
        }
        Ok(match self.run_sync(tenant, &backend, true).await {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => false,
        })
    }

    /// Runs [`Vault::federation_sync_tick`] every `tick` until `shutdown` turns true.
    pub(crate) async fn run_federation_syncs(
        self: Arc<Self>,
        tick: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.federation_sync_tick().await {
                tracing::warn!(error = %e.detail(), "federation sync pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Syncs this process finished, by outcome (`completed`, `failed`), for `/metrics`.
    pub fn federation_sync_results(&self) -> Vec<(&'static str, u64)> {
        self.federation
            .sync_results
            .lock()
            .expect("sync results lock")
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

fn unmapped(backend: &Mounted, path: &SecretPath) -> CoreError {
    CoreError::InvalidPath(format!(
        "no path_mapping rule of federation backend {} matches '{path}'",
        backend.id
    ))
}
