//! Rotation: policies, assignments, the scheduler, forced and automatic rotations, completion by
//! the next write, failure, and the readers still on a superseded version.
//!
//! The schedule logic is `scaivault_rotation`'s; here each transition is stored with a conditional
//! update together with the event it fires, so with several replicas every event fires once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use scaivault_api::{
    AssignRotationRequest, ForceRotationResponse, RotationAssignment, RotationAssignmentList,
    RotationPolicyList, RotationPolicyRequest, RotationPolicyResponse, StaleReader, StaleReaders,
    UpdateRotationPolicyRequest, WriteSecretRequest,
};
use scaivault_crypto::random_id;
use scaivault_domain::{DurationList, DurationSpec, Permission, Scope, SecretPath, check_description};
use scaivault_events::EventType;
use scaivault_rotation::{Assignment, Fire, Generator, State, Timing};
use scaivault_store::{
    AssignmentRecord, AuditFilter, AuditOrder, RotationCompletion, RotationPolicyRecord, StoreError,
    WebhookKind,
};
use tokio::sync::watch;

use crate::audit::{AuditEvent, RequestInfo, WriteAudit};
use crate::cache::{invalidating, secret_key};
use crate::events::Emitter;
use crate::paging::{decode_cursor, limit, next_cursor};
use crate::{CoreError, Principal, Space, Vault};

const DEFAULT_GRACE: &str = "24h";
const DEFAULT_TIMEOUT: &str = "24h";
/// Schedules handled per scheduler query.
const TICK_BATCH: u32 = 1000;
/// Audit records read when looking for stale readers.
const READERS_SCAN_LIMIT: usize = 100_000;

fn duration(s: &str) -> Result<DurationSpec, CoreError> {
    DurationSpec::parse(s).map_err(|e| CoreError::Internal(format!("stored duration {s:?}: {e}")))
}

fn delta(d: DurationSpec) -> TimeDelta {
    d.as_chrono()
}

/// A policy's timing, from its stored durations.
fn timing(p: &RotationPolicyRecord) -> Result<Timing, CoreError> {
    let warn = DurationList::parse(&p.warn_before)
        .map_err(|e| CoreError::Internal(format!("stored warn_before: {e}")))?;
    Ok(Timing::new(
        delta(duration(&p.interval)?),
        warn.as_slice().iter().map(|d| delta(*d)).collect(),
        delta(duration(&p.rotation_timeout)?),
    ))
}

fn state_of(a: &AssignmentRecord) -> Result<Assignment, CoreError> {
    Ok(Assignment {
        state: State::parse(&a.state)
            .ok_or_else(|| CoreError::Internal(format!("rotation state {:?}", a.state)))?,
        next_rotation_at: a.next_rotation_at,
        warned: a.warned,
        due_since: a.due_since,
        last_rotated_at: a.last_rotated_at,
    })
}

/// The record of `base` moved to `next` (keeping the revision read, which the update checks).
fn record_of(
    base: &AssignmentRecord,
    next: &Assignment,
    timing: &Timing,
    now: DateTime<Utc>,
) -> AssignmentRecord {
    AssignmentRecord {
        state: next.state.as_str().to_owned(),
        next_rotation_at: next.next_rotation_at,
        warned: next.warned,
        due_since: next.due_since,
        last_rotated_at: next.last_rotated_at,
        wake_at: next.wake_at(timing),
        updated_at: now,
        ..base.clone()
    }
}

/// The stored generator of an `auto_generate` policy (the default one when none was given).
fn generator_of(policy: &RotationPolicyRecord) -> Result<Generator, CoreError> {
    match &policy.generator {
        Some(g) => serde_json::from_str(g).map_err(|e| CoreError::Internal(format!("stored generator: {e}"))),
        None => Ok(Generator::default()),
    }
}

fn assignment_response(a: &AssignmentRecord) -> RotationAssignment {
    RotationAssignment {
        secret_path: a.path.clone(),
        policy_id: a.policy_id.clone(),
        next_rotation_at: a.next_rotation_at,
        last_rotated_at: a.last_rotated_at,
        state: a.state.clone(),
    }
}

fn policy_response(p: &RotationPolicyRecord) -> Result<RotationPolicyResponse, CoreError> {
    Ok(RotationPolicyResponse {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        interval: duration(&p.interval)?,
        grace_period: duration(&p.grace_period)?,
        warn_before: DurationList::parse(&p.warn_before).map_err(|e| CoreError::Internal(e.to_string()))?,
        auto_generate: p.auto_generate,
        generator: p
            .generator
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| CoreError::Internal(format!("stored generator: {e}")))?,
        webhook_ids: p.webhook_ids.clone(),
        rotation_timeout: duration(&p.rotation_timeout)?,
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

/// A tenant object's name (rotation policies, federation backends): 1-64 of `a-z 0-9 - _`.
pub(crate) fn check_name(name: &str) -> Result<(), CoreError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidRequest("name must be 1-64 of a-z, 0-9, '-' and '_'".into()))
    }
}

/// Checks a policy's settings; answers the generator as stored.
fn check_policy(p: &RotationPolicyRecord) -> Result<(), CoreError> {
    check_description(&p.description)?;
    let interval = duration(&p.interval)?;
    if interval.as_secs() == 0 {
        return Err(CoreError::InvalidRequest("interval must be longer than zero".into()));
    }
    if duration(&p.rotation_timeout)?.as_secs() == 0 {
        return Err(CoreError::InvalidRequest("rotation_timeout must be longer than zero".into()));
    }
    let warn = DurationList::parse(&p.warn_before).map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
    if let Some(w) = warn.as_slice().iter().find(|w| w.as_secs() == 0 || w.as_secs() >= interval.as_secs()) {
        return Err(CoreError::InvalidRequest(format!(
            "warn_before {w} must be longer than zero and shorter than the interval {interval}"
        )));
    }
    if let Some(g) = &p.generator {
        let g: Generator =
            serde_json::from_str(g).map_err(|e| CoreError::InvalidRequest(format!("generator: {e}")))?;
        g.validate().map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
    }
    Ok(())
}

fn not_found(e: StoreError) -> CoreError {
    match e {
        StoreError::NotFound => CoreError::NotFound("rotation policy"),
        other => other.into(),
    }
}

impl Vault {
    async fn check_webhook_ids(&self, tenant: &str, ids: &[String]) -> Result<(), CoreError> {
        for id in ids {
            match self.store.get_webhook(tenant, WebhookKind::Webhook, id).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    return Err(CoreError::InvalidRequest(format!("webhook_ids: no webhook {id}")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `POST /v1/rotation/policies`
    pub async fn create_rotation_policy(
        &self,
        principal: &Principal,
        req: RotationPolicyRequest,
    ) -> Result<RotationPolicyResponse, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        check_name(&req.name)?;
        let now = self.clock.now();
        let generator = match (req.generator, req.auto_generate) {
            (Some(g), _) => Some(g),
            (None, true) => Some(Generator::default()),
            (None, false) => None,
        };
        let record = RotationPolicyRecord {
            tenant: principal.tenant.clone(),
            id: format!("rot_{}", req.name),
            name: req.name,
            description: req.description,
            interval: req.interval.to_string(),
            grace_period: req.grace_period.map_or_else(|| DEFAULT_GRACE.to_owned(), |d| d.to_string()),
            warn_before: req.warn_before.map(|w| w.to_string()).unwrap_or_default(),
            rotation_timeout: req
                .rotation_timeout
                .map_or_else(|| DEFAULT_TIMEOUT.to_owned(), |d| d.to_string()),
            auto_generate: req.auto_generate,
            generator: generator
                .map(|g| serde_json::to_string(&g))
                .transpose()
                .map_err(|e| CoreError::Internal(e.to_string()))?,
            webhook_ids: req.webhook_ids,
            created_at: now,
            updated_at: now,
        };
        check_policy(&record)?;
        self.check_webhook_ids(&principal.tenant, &record.webhook_ids).await?;
        self.store.create_rotation_policy(&record).await.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("a rotation policy named '{}' already exists", record.name))
            }
            other => other.into(),
        })?;
        policy_response(&record)
    }

    /// `GET /v1/rotation/policies/{id}`
    pub async fn get_rotation_policy(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<RotationPolicyResponse, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        policy_response(&self.store.get_rotation_policy(&principal.tenant, id).await.map_err(not_found)?)
    }

    /// `GET /v1/rotation/policies`
    pub async fn list_rotation_policies(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<RotationPolicyList, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("rotation_policies", cursor)?;
        let rows = self.store.list_rotation_policies(&principal.tenant, after.as_deref(), limit).await?;
        let next_cursor = next_cursor("rotation_policies", &rows, limit, |p| p.id.clone());
        Ok(RotationPolicyList {
            policies: rows.iter().map(policy_response).collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// `PATCH /v1/rotation/policies/{id}`: schedules already running keep their next due time.
    pub async fn update_rotation_policy(
        &self,
        principal: &Principal,
        id: &str,
        req: UpdateRotationPolicyRequest,
    ) -> Result<RotationPolicyResponse, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let mut p = self.store.get_rotation_policy(&principal.tenant, id).await.map_err(not_found)?;
        if let Some(v) = req.description {
            p.description = v;
        }
        if let Some(v) = req.interval {
            p.interval = v.to_string();
        }
        if let Some(v) = req.grace_period {
            p.grace_period = v.to_string();
        }
        if let Some(v) = req.warn_before {
            p.warn_before = v.to_string();
        }
        if let Some(v) = req.auto_generate {
            p.auto_generate = v;
        }
        if let Some(g) = req.generator {
            p.generator = Some(serde_json::to_string(&g).map_err(|e| CoreError::Internal(e.to_string()))?);
        } else if p.auto_generate && p.generator.is_none() {
            p.generator = Some(
                serde_json::to_string(&Generator::default())
                    .map_err(|e| CoreError::Internal(e.to_string()))?,
            );
        }
        if let Some(v) = req.webhook_ids {
            self.check_webhook_ids(&principal.tenant, &v).await?;
            p.webhook_ids = v;
        }
        if let Some(v) = req.rotation_timeout {
            p.rotation_timeout = v.to_string();
        }
        check_policy(&p)?;
        p.updated_at = self.clock.now();
        self.store.update_rotation_policy(&p).await.map_err(not_found)?;
        policy_response(&p)
    }

    /// `DELETE /v1/rotation/policies/{id}`, with its assignments.
    pub async fn delete_rotation_policy(&self, principal: &Principal, id: &str) -> Result<(), CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        self.store.delete_rotation_policy(&principal.tenant, id).await.map_err(not_found)
    }

    /// `POST /v1/rotation/policies/{id}/secrets`: the secret is due one interval from now.
    pub async fn assign_rotation(
        &self,
        principal: &Principal,
        id: &str,
        req: AssignRotationRequest,
    ) -> Result<RotationAssignment, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let path = SecretPath::parse(&req.secret_path)?;
        let policy = self.store.get_rotation_policy(&principal.tenant, id).await.map_err(not_found)?;
        // Only existing secrets are assigned.
        self.store.list_versions(&principal.tenant, path.as_str()).await?;
        let timing = timing(&policy)?;
        let now = self.clock.now();
        let a = Assignment::new(&timing, now);
        let record = AssignmentRecord {
            tenant: principal.tenant.clone(),
            path: path.to_string(),
            policy_id: policy.id.clone(),
            state: a.state.as_str().to_owned(),
            next_rotation_at: a.next_rotation_at,
            warned: a.warned,
            due_since: None,
            last_rotated_at: None,
            wake_at: a.wake_at(&timing),
            revision: 0,
            created_at: now,
            updated_at: now,
        };
        let key = secret_key(&record.tenant, &record.path);
        let assigned =
            invalidating(|| self.caches.unassigned.remove(&key), self.store.assign_rotation(&record)).await;
        assigned.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict("this secret is already assigned to a rotation policy".into())
            }
            other => other.into(),
        })?;
        Ok(assignment_response(&record))
    }

    /// `GET /v1/rotation/policies/{id}/secrets`
    pub async fn list_rotation_assignments(
        &self,
        principal: &Principal,
        id: &str,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<RotationAssignmentList, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        self.store.get_rotation_policy(&principal.tenant, id).await.map_err(not_found)?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("rotation_assignments", cursor)?;
        let rows = self.store.list_assignments(&principal.tenant, id, after.as_deref(), limit).await?;
        let next_cursor = next_cursor("rotation_assignments", &rows, limit, |a| a.path.clone());
        Ok(RotationAssignmentList { secrets: rows.iter().map(assignment_response).collect(), next_cursor })
    }

    /// `DELETE /v1/rotation/policies/{id}/secrets/{path}`
    pub async fn unassign_rotation(
        &self,
        principal: &Principal,
        id: &str,
        path: &SecretPath,
    ) -> Result<(), CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        self.store.unassign_rotation(&principal.tenant, id, path.as_str()).await.map_err(|e| match e {
            StoreError::NotFound => CoreError::NotFound("rotation assignment"),
            other => other.into(),
        })
    }

    /// `POST /v1/rotation/policies/{id}/rotate`: the named secrets (none: all assigned) are due now.
    /// Each gets an audit record `secret.rotate` on its path, beside the request's own.
    pub async fn force_rotation(
        &self,
        principal: &Principal,
        id: &str,
        paths: Vec<String>,
        request: Option<&RequestInfo>,
    ) -> Result<ForceRotationResponse, CoreError> {
        self.authorize(principal, Scope::Admin, None).await?;
        let tenant = principal.tenant.as_str();
        self.store.get_rotation_policy(tenant, id).await.map_err(not_found)?;
        // Every assigned secret, when none is named; a deleted one (its schedule is paused until it
        // is undeleted) or one without a current version is passed over rather than refusing all.
        let everything = paths.is_empty();
        let paths = if everything {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = self.store.list_assignments(tenant, id, after.as_deref(), 1000).await?;
                after = page.last().map(|a| a.path.clone());
                let done = page.len() < 1000;
                all.extend(page.into_iter().map(|a| a.path));
                if done {
                    break all;
                }
            }
        } else {
            paths
        };
        // Every path is checked before any schedule changes: one that cannot rotate refuses the
        // request, and nothing has been made due or announced. A path named twice rotates once.
        let mut checked = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for raw in paths {
            let path = SecretPath::parse(&raw)?;
            if !seen.insert(path.as_str().to_owned()) {
                continue;
            }
            let (a, policy) = self
                .store
                .get_assignment(tenant, path.as_str())
                .await?
                .filter(|(a, _)| a.policy_id == id)
                .ok_or_else(|| CoreError::InvalidRequest(format!("{path} is not assigned to {id}")))?;
            match self.check_rotatable(&a, &policy, &path).await {
                Ok(()) => checked.push((path, a, policy)),
                Err(CoreError::SecretNotFound | CoreError::VersionNotFound(_)) if everything => {}
                Err(e) => return Err(e),
            }
        }
        let mut secrets = Vec::new();
        for (path, a, policy) in checked {
            let done = self.force_one(&a, &policy).await?;
            if let Some(request) = request {
                let event = AuditEvent {
                    action: "secret.rotate".into(),
                    secret_path: Some(path.to_string()),
                    version: None,
                    resource_id: Some(policy.id.clone()),
                    subject: None,
                    outcome: "success",
                    // The forced rotation is answered 202 Accepted, as its own record says.
                    status_code: 202,
                };
                self.record_audit(principal, request, event).await?;
            }
            secrets.push(assignment_response(&done));
        }
        Ok(ForceRotationResponse { secrets })
    }

    /// `POST /v1/secrets/{path}/rotate`: due now under the secret's policy.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        space: Space,
        path: &SecretPath,
    ) -> Result<RotationAssignment, CoreError> {
        let ns =
            self.authorize_secret(principal, space, Scope::SecretsRotate, Permission::Rotate, path).await?;
        // A secret that does not exist is not found before it is found unassigned.
        self.store.list_versions(&ns, path.as_str()).await?;
        let (a, policy) = self.store.get_assignment(&ns, path.as_str()).await?.ok_or_else(|| {
            CoreError::InvalidRequest("no rotation policy is assigned to this secret".into())
        })?;
        self.check_rotatable(&a, &policy, path).await?;
        Ok(assignment_response(&self.force_one(&a, &policy).await?))
    }

    /// Refuses, before anything changes, a forced rotation that could not be carried out: the
    /// secret must not be deleted (its schedule is paused meanwhile), and an automatic one needs the
    /// current data (not destroyed) and a generator that applies to it. Otherwise the schedule would
    /// be made due and `rotation.due` sent for a request that then fails, or for a secret nobody
    /// can read.
    async fn check_rotatable(
        &self,
        a: &AssignmentRecord,
        policy: &RotationPolicyRecord,
        path: &SecretPath,
    ) -> Result<(), CoreError> {
        self.store.list_versions(&a.tenant, path.as_str()).await?;
        if policy.auto_generate {
            let current = self.read_secret_unchecked(&a.tenant, path).await?;
            generator_of(policy)?.apply(&current).map_err(|e| CoreError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    async fn force_one(
        &self,
        a: &AssignmentRecord,
        policy: &RotationPolicyRecord,
    ) -> Result<AssignmentRecord, CoreError> {
        let timing = timing(policy)?;
        // A concurrent change moves the revision; read again and retry.
        let mut current = a.clone();
        for _ in 0..5 {
            let now = self.clock.now();
            let (next, fire) = state_of(&current)?.force(&timing, now);
            let record = record_of(&current, &next, &timing, now);
            if self.apply(&record, policy, fire).await? {
                let applied = AssignmentRecord { revision: record.revision + 1, ..record };
                if !policy.auto_generate {
                    return Ok(applied);
                }
                // The new version completed the rotation and moved the schedule on: answer with that.
                self.auto_rotate(&applied, policy).await?;
                return Ok(self
                    .store
                    .get_assignment(&a.tenant, &a.path)
                    .await?
                    .map_or(applied, |(done, _)| done));
            }
            match self.store.get_assignment(&a.tenant, &a.path).await? {
                Some((fresh, _)) => current = fresh,
                None => return Err(CoreError::NotFound("rotation assignment")),
            }
        }
        Err(CoreError::Conflict("the rotation schedule kept changing; try again".into()))
    }

    /// Stores one transition with the event it fires, if nobody changed the schedule meanwhile.
    async fn apply(
        &self,
        record: &AssignmentRecord,
        policy: &RotationPolicyRecord,
        fire: Fire,
    ) -> Result<bool, CoreError> {
        let emitter = self.emitter(&record.tenant).await?;
        self.apply_with(&emitter, record, policy, fire).await
    }

    /// As [`Vault::apply`], with the tenant's webhooks already loaded (a scheduler pass loads them
    /// once per tenant).
    async fn apply_with(
        &self,
        emitter: &Emitter,
        record: &AssignmentRecord,
        policy: &RotationPolicyRecord,
        fire: Fire,
    ) -> Result<bool, CoreError> {
        let now = self.clock.now();
        let current_version = match self.store.list_versions(&record.tenant, &record.path).await {
            Ok((head, _)) => Some(head.current_version),
            Err(StoreError::SecretNotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let (event_type, data) = match fire {
            Fire::Warning | Fire::Due => (
                EventType::RotationDue,
                serde_json::json!({
                    "due_now": fire == Fire::Due,
                    "next_rotation_at": record.next_rotation_at,
                    "policy_id": policy.id,
                    "current_version": current_version,
                }),
            ),
            Fire::Failed(reason) => (
                EventType::RotationFailed,
                serde_json::json!({
                    "reason": reason.as_str(),
                    "policy_id": policy.id,
                    "due_since": record.due_since,
                    "current_version": current_version,
                }),
            ),
        };
        let event = emitter.event_to(event_type, Some(&record.path), data, now, &policy.webhook_ids)?;
        let events = vec![event];
        let applied = self.store.transition_assignment(record, &events).await?;
        if applied {
            tracing::info!(path = %record.path, policy = %policy.id, event = event_type.as_str(), "rotation event");
            self.published(&events);
        }
        Ok(applied)
    }

    /// `auto_generate`: the next version is the current one with the generator's fields replaced,
    /// written by the system; the write completes the rotation.
    async fn auto_rotate(
        &self,
        a: &AssignmentRecord,
        policy: &RotationPolicyRecord,
    ) -> Result<(), CoreError> {
        let generator = generator_of(policy)?;
        let system = Principal::system(&a.tenant);
        let path = SecretPath::parse(&a.path)?;
        let current = self.read_secret_unchecked(&a.tenant, &path).await?;
        let data = generator.apply(&current).map_err(|e| CoreError::Internal(e.to_string()))?;
        let request = RequestInfo { request_id: random_id("rot_")?, client_ip: None, user_agent: None };
        let audit = WriteAudit {
            request,
            action: "secret.rotate".into(),
            secret_path: a.path.clone(),
            status_created: 201,
            status_updated: 200,
        };
        let req = WriteSecretRequest { data, secret_type: None, metadata: None, options: None, cas: None };
        // As any local change: refused under a proxy mount, sent to the backend first under a
        // sync mount with write-through.
        let (_mounts, backend) = self.federated_for_change(&a.tenant, &path).await?;
        match backend.filter(|b| b.write_through) {
            Some(b) => self.write_through(&system, &a.tenant, &b, &path, req, Some(audit)).await?,
            None => self.write_version(&system, &a.tenant, &path, req, Some(audit)).await?,
        };
        Ok(())
    }

    /// What a write of `path` completes, if a rotation is waiting for it.
    pub(crate) async fn rotation_completion(
        &self,
        tenant: &str,
        path: &SecretPath,
    ) -> Result<Option<(RotationCompletion, RotationPolicyRecord)>, CoreError> {
        // Most secrets have no schedule: that absence is cached (see `cache.rs`), a schedule is not.
        let key = secret_key(tenant, path.as_str());
        if self.caches.enabled() && self.caches.unassigned.get(&key).is_some() {
            return Ok(None);
        }
        let ticket = self.caches.unassigned.ticket();
        let Some((a, policy)) = self.store.get_assignment(tenant, path.as_str()).await? else {
            if self.caches.enabled() {
                self.caches.unassigned.insert(ticket, key, ());
            }
            return Ok(None);
        };
        let timing = timing(&policy)?;
        let now = self.clock.now();
        let Some(next) = state_of(&a)?.complete(&timing, now) else { return Ok(None) };
        let grace_until = now + delta(duration(&policy.grace_period)?);
        Ok(Some((RotationCompletion { next: record_of(&a, &next, &timing, now), grace_until }, policy)))
    }

    /// The `rotation.due` notification of a due rotation could not be delivered: it has failed.
    pub(crate) async fn rotation_undelivered(&self, tenant: &str, path: &str) -> Result<(), CoreError> {
        let Some((a, policy)) = self.store.get_assignment(tenant, path).await? else { return Ok(()) };
        let Some((next, fire)) = state_of(&a)?.undelivered() else { return Ok(()) };
        let timing = timing(&policy)?;
        self.apply(&record_of(&a, &next, &timing, self.clock.now()), &policy, fire).await?;
        Ok(())
    }

    /// Rotation schedules by state, over every tenant (for `/metrics`).
    pub async fn rotation_state_counts(&self) -> Result<Vec<(String, u64)>, CoreError> {
        Ok(self.store.assignment_counts().await?)
    }

    /// One scheduler pass: every schedule with work due now moves on, one transition at a time,
    /// each stored conditionally with its event. Returns the transitions this process applied.
    pub async fn rotation_tick(&self) -> Result<usize, CoreError> {
        let mut applied = 0;
        loop {
            let now = self.clock.now();
            let due = self.store.due_assignments(now, TICK_BATCH).await?;
            let full = due.len() as u32 == TICK_BATCH;
            let mut moved = 0;
            let mut emitters: HashMap<String, Emitter> = HashMap::new();
            for (a, policy) in due {
                let timing = timing(&policy)?;
                let current = state_of(&a)?;
                let Some((next, fire)) = current.tick(&timing, now) else {
                    // The policy changed since this wake time was set (a warning removed, say):
                    // store the right one, or the schedule would be read again on every pass.
                    let fixed = record_of(&a, &current, &timing, now);
                    if fixed.wake_at != a.wake_at && self.store.transition_assignment(&fixed, &[]).await? {
                        moved += 1;
                    }
                    continue;
                };
                let record = record_of(&a, &next, &timing, now);
                if !emitters.contains_key(&a.tenant) {
                    emitters.insert(a.tenant.clone(), self.emitter(&a.tenant).await?);
                }
                let Some(emitter) = emitters.get(&a.tenant) else { continue };
                if self.apply_with(emitter, &record, &policy, fire).await? {
                    applied += 1;
                    moved += 1;
                    if fire == Fire::Due && policy.auto_generate {
                        let done = AssignmentRecord { revision: record.revision + 1, ..record };
                        if let Err(e) = self.auto_rotate(&done, &policy).await {
                            tracing::warn!(path = %done.path, error = %e.detail(), "automatic rotation failed");
                        }
                    }
                }
            }
            // Another pass only while there was more than one batch and it made progress.
            if !full || moved == 0 {
                return Ok(applied);
            }
        }
    }

    /// Runs [`Vault::rotation_tick`] every `tick` until `shutdown` turns true.
    /// Federation syncs run beside it, on their own task, so a long sync never holds up rotations.
    pub async fn run_scheduler(self: Arc<Self>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
        let syncs = tokio::spawn(self.clone().run_federation_syncs(tick, shutdown.clone()));
        let _stop_syncs = AbortOnDrop(syncs);
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.rotation_tick().await {
                tracing::warn!(error = %e.detail(), "rotation scheduler pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// `GET /v1/rotation/policies/{id}/secrets/{path}/readers`: identities whose latest successful
    /// read of the secret (from the audit trail) is of a version older than the current one.
    pub async fn stale_readers(
        &self,
        principal: &Principal,
        id: &str,
        path: &SecretPath,
    ) -> Result<StaleReaders, CoreError> {
        self.authorize(principal, Scope::AuditRead, None).await?;
        let tenant = principal.tenant.as_str();
        self.store
            .get_assignment(tenant, path.as_str())
            .await?
            .filter(|(a, _)| a.policy_id == id)
            .ok_or(CoreError::NotFound("rotation assignment"))?;
        let (head, versions) = self.store.list_versions(tenant, path.as_str()).await?;
        let current = head.current_version;
        let grace_expires_at = versions.iter().find(|v| v.version + 1 == current).and_then(|v| v.expires_at);
        let filter = AuditFilter {
            secret_path: Some(path.as_str()),
            action: Some("secret.read"),
            outcome: Some("success"),
            ..AuditFilter::default()
        };
        // Latest read per identity.
        let mut last: BTreeMap<(String, String), (DateTime<Utc>, u64)> = BTreeMap::new();
        let mut after = None;
        let mut scanned = 0;
        loop {
            let rows = self.store.audit_page(tenant, &filter, AuditOrder::OldestFirst, after, 1000).await?;
            after = rows.last().map(|r| r.seq);
            scanned += rows.len();
            for row in &rows {
                let r = crate::audit::record_of(row)?;
                if let Some(v) = r.version {
                    last.insert((r.identity_type, r.identity_id), (r.timestamp, v));
                }
            }
            if rows.len() < 1000 || scanned >= READERS_SCAN_LIMIT {
                break;
            }
        }
        let readers = last
            .into_iter()
            .filter(|(_, (_, v))| *v < current)
            .map(|((identity_type, identity_id), (at, v))| StaleReader {
                identity_type,
                identity_id,
                last_read_at: at,
                last_read_version: v,
            })
            .collect();
        Ok(StaleReaders {
            secret_path: path.to_string(),
            current_version: current,
            grace_expires_at,
            readers,
        })
    }
}

/// The events of a write that completed a rotation, besides its own.
pub(crate) fn rotated_event_data(
    version: u64,
    completion: &RotationCompletion,
    policy: &RotationPolicyRecord,
) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "previous_version": version.saturating_sub(1),
        "policy_id": policy.id,
        "next_rotation_at": completion.next.next_rotation_at,
        "previous_version_expires_at": completion.grace_until,
    })
}

/// Stops a task when dropped (the scheduler's sync loop, when the scheduler is stopped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
