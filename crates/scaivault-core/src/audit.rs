//! The audit trail: every audited request becomes a record in its tenant's hash chain before the
//! answer leaves the server (fail closed). Records are committed in groups by one writer task, and
//! each request waits for its own record to be durable.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use scaivault_api::{AuditList, AuditRecord, AuditVerification};
use scaivault_crypto::{AuditKey, GENESIS_HASH, chain_hash, random_id};
use scaivault_domain::Scope;
use scaivault_store::{AuditFilter, AuditOrder, AuditRow, NewAuditEntry, Store};
use tokio::sync::{mpsc, oneshot};

use crate::paging::limit;
use crate::{CoreError, Principal, Vault};

/// Records waiting for the writer at most; beyond it, requests wait for room (back-pressure).
const QUEUE: usize = 4096;
/// Records per commit at most.
const BATCH: usize = 512;
const VERIFY_PAGE: u32 = 1000;

/// What the HTTP layer knows about a request that core does not.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub request_id: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One audited request.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Dotted, such as `secret.read`.
    pub action: Cow<'static, str>,
    pub secret_path: Option<String>,
    pub version: Option<u64>,
    /// The object the request names or creates (not a secret: that is `secret_path`).
    pub resource_id: Option<String>,
    /// Whom a binding or a new token is for.
    pub subject: Option<String>,
    /// `success`, `denied` or `error`.
    pub outcome: &'static str,
    pub status_code: u16,
}

type Job = (NewAuditEntry, oneshot::Sender<Result<(), String>>);

/// Hands records to the writer task and reports its queue.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<Job>,
}

impl AuditWriter {
    pub(crate) fn start(store: Arc<dyn Store>, key: Arc<AuditKey>) -> AuditWriter {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut jobs, BATCH).await > 0 {
                let (entries, waiting): (Vec<NewAuditEntry>, Vec<_>) = jobs.drain(..).unzip();
                let sign = |tenant: &str, seq: u64, hash: &[u8; 32]| key.sign_head(tenant, seq, hash);
                let result =
                    store.append_audit(&entries, &chain_hash, &sign).await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, records = entries.len(), "audit records could not be written");
                }
                for done in waiting {
                    let _ = done.send(result.clone());
                }
            }
        });
        AuditWriter { tx }
    }

    async fn write(&self, entry: NewAuditEntry) -> Result<(), CoreError> {
        let (done, wait) = oneshot::channel();
        let unavailable =
            |why: String| CoreError::Unavailable(format!("the audit log cannot be written: {why}"));
        self.tx.send((entry, done)).await.map_err(|_| unavailable("the writer stopped".into()))?;
        wait.await.map_err(|_| unavailable("the writer stopped".into()))?.map_err(unavailable)
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

pub(crate) fn record_of(row: &AuditRow) -> Result<AuditRecord, CoreError> {
    serde_json::from_str(&row.body)
        .map_err(|_| CoreError::Internal(format!("audit record {} does not parse", row.seq)))
}

fn seq_cursor(seq: u64) -> String {
    seq.to_string()
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<u64>, CoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<u64>().map_err(|_| CoreError::InvalidRequest("cursor is not valid".into())))
        .transpose()
}

/// The record of one request, as hashed into its tenant's chain.
pub(crate) fn audit_entry(
    principal: &Principal,
    request: &RequestInfo,
    event: AuditEvent,
    id: String,
    timestamp: DateTime<Utc>,
) -> NewAuditEntry {
    let record = AuditRecord {
        id,
        timestamp,
        tenant_id: principal.tenant.clone(),
        identity_type: principal.identity_type.clone(),
        identity_id: principal.identity_id.clone(),
        action: event.action.into_owned(),
        secret_path: event.secret_path,
        version: event.version,
        resource_id: event.resource_id,
        subject: event.subject,
        outcome: event.outcome.to_owned(),
        status_code: event.status_code,
        request_id: request.request_id.clone(),
        client_ip: request.client_ip.clone(),
        user_agent: request.user_agent.clone(),
    };
    // Strings, numbers and options only: serialising cannot fail.
    let body = serde_json::to_string(&record).expect("an audit record always serialises");
    NewAuditEntry {
        tenant: record.tenant_id,
        id: record.id,
        timestamp: record.timestamp,
        identity_id: record.identity_id,
        action: record.action,
        secret_path: record.secret_path,
        outcome: record.outcome,
        body,
    }
}

/// A write's audit record, written by the write's own transaction: what the HTTP layer knows
/// about the request, and the answers it gives for a created and an updated secret.
#[derive(Debug, Clone)]
pub struct WriteAudit {
    pub request: RequestInfo,
    pub action: Cow<'static, str>,
    pub secret_path: String,
    pub status_created: u16,
    pub status_updated: u16,
}

/// The outcomes a record can have, and so the only ones a query may filter on.
const OUTCOMES: [&str; 3] = ["success", "denied", "error"];

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub identity_id: Option<String>,
    pub path: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Vault {
    /// Records `event` for `principal` in its tenant's chain and waits until it is durable. An
    /// error means the request must fail (`503`) and return nothing.
    pub async fn record_audit(
        &self,
        principal: &Principal,
        request: &RequestInfo,
        event: AuditEvent,
    ) -> Result<(), CoreError> {
        let entry = audit_entry(principal, request, event, random_id("aud_")?, self.clock.now());
        self.audit.write(entry).await
    }

    /// The audit key and chain function a store needs to append inside a change's transaction.
    pub(crate) fn audit_signer(&self) -> impl Fn(&str, u64, &[u8; 32]) -> Vec<u8> + Send + Sync + '_ {
        |tenant: &str, seq: u64, hash: &[u8; 32]| self.audit_key.sign_head(tenant, seq, hash)
    }

    /// Records waiting to be committed.
    pub fn audit_queue_depth(&self) -> usize {
        self.audit.queue_depth()
    }

    /// `GET /v1/audit`: newest first.
    pub async fn query_audit(&self, principal: &Principal, q: AuditQuery) -> Result<AuditList, CoreError> {
        self.authorize(principal, Scope::AuditRead, None).await?;
        if let Some(o) = q.outcome.as_deref()
            && !OUTCOMES.contains(&o)
        {
            return Err(CoreError::InvalidRequest("outcome must be one of success, denied, error".into()));
        }
        let filter = AuditFilter {
            identity_id: q.identity_id.as_deref(),
            secret_path: q.path.as_deref(),
            action: q.action.as_deref(),
            outcome: q.outcome.as_deref(),
            start: q.start,
            end: q.end,
        };
        self.audit_list(principal, &filter, AuditOrder::NewestFirst, q.limit, q.cursor.as_deref()).await
    }

    /// `GET /v1/audit/secrets/{path}`: that secret's history, oldest first.
    pub async fn secret_audit(
        &self,
        principal: &Principal,
        path: &scaivault_domain::SecretPath,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<AuditList, CoreError> {
        self.authorize(principal, Scope::AuditRead, None).await?;
        let filter = AuditFilter { secret_path: Some(path.as_str()), ..AuditFilter::default() };
        self.audit_list(principal, &filter, AuditOrder::OldestFirst, limit_param, cursor).await
    }

    async fn audit_list(
        &self,
        principal: &Principal,
        filter: &AuditFilter<'_>,
        order: AuditOrder,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<AuditList, CoreError> {
        let limit = limit(limit_param)?;
        let rows =
            self.store.audit_page(&principal.tenant, filter, order, parse_cursor(cursor)?, limit).await?;
        let next_cursor =
            (rows.len() as u32 == limit).then(|| rows.last().map(|r| seq_cursor(r.seq))).flatten();
        Ok(AuditList { logs: rows.iter().map(record_of).collect::<Result<_, _>>()?, next_cursor })
    }

    /// One page of the export (oldest first, after `after`), for a stream of JSON lines.
    pub async fn export_audit_page(
        &self,
        principal: &Principal,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        after: Option<u64>,
    ) -> Result<(Vec<AuditRecord>, Option<u64>), CoreError> {
        self.authorize(principal, Scope::AuditExport, None).await?;
        let filter = AuditFilter { start, end, ..AuditFilter::default() };
        let rows = self
            .store
            .audit_page(&principal.tenant, &filter, AuditOrder::OldestFirst, after, VERIFY_PAGE)
            .await?;
        let last = rows.last().map(|r| r.seq);
        Ok((rows.iter().map(record_of).collect::<Result<_, _>>()?, last))
    }

    /// `GET /v1/audit/verify`: walks the tenant's chain and checks every link, every indexed column
    /// against its body, and the signed head (which catches removal of the newest records).
    pub async fn verify_audit(&self, principal: &Principal) -> Result<AuditVerification, CoreError> {
        self.authorize(principal, Scope::AuditRead, None).await?;
        let tenant = &principal.tenant;
        let invalid = |checked: u64, id: Option<String>, reason: String| AuditVerification {
            valid: false,
            checked,
            first_invalid_id: id,
            reason: Some(reason),
        };
        // The signed head is read first and the chain is checked up to it, so records appended while
        // verifying are not mistaken for tampering.
        let mut head = self.store.audit_head(tenant).await?;
        if head.is_none() {
            // No signed head vouches for no record: a record without one means the head was
            // removed, unless the tenant's first record and its head were written just now.
            let any = self
                .store
                .audit_page(tenant, &AuditFilter::default(), AuditOrder::OldestFirst, None, 1)
                .await?;
            if let Some(first) = any.first() {
                head = self.store.audit_head(tenant).await?;
                if head.is_none() {
                    return Ok(invalid(
                        0,
                        Some(first.id.clone()),
                        "the chain has records but no signed head".into(),
                    ));
                }
            }
        }
        let end = head.as_ref().map_or(0, |h| h.seq);
        let mut prev = GENESIS_HASH;
        let mut last = 0u64;
        'pages: while last < end {
            let page = self
                .store
                .audit_page(tenant, &AuditFilter::default(), AuditOrder::OldestFirst, Some(last), VERIFY_PAGE)
                .await?;
            if page.is_empty() {
                break;
            }
            for row in page {
                if row.seq > end {
                    break 'pages;
                }
                let id = Some(row.id.clone());
                if row.seq != last + 1 {
                    return Ok(invalid(last, id, format!("record {} is missing or out of order", last + 1)));
                }
                if row.prev_hash != prev {
                    return Ok(invalid(
                        last,
                        id,
                        format!("record {} does not follow its predecessor", row.seq),
                    ));
                }
                let hash = chain_hash(tenant, row.seq, &prev, row.body.as_bytes());
                if row.hash != hash {
                    return Ok(invalid(last, id, format!("record {} was altered", row.seq)));
                }
                let body = record_of(&row).ok();
                let consistent = body.is_some_and(|b| {
                    b.id == row.id
                        && b.tenant_id == *tenant
                        && b.identity_id == row.identity_id
                        && b.action == row.action
                        && b.secret_path == row.secret_path
                        && b.outcome == row.outcome
                        && b.timestamp == row.timestamp
                });
                if !consistent {
                    return Ok(invalid(last, id, format!("record {} was altered", row.seq)));
                }
                prev = hash;
                last = row.seq;
            }
        }
        let head_ok = match &head {
            None => last == 0,
            Some(h) => {
                h.seq == last && h.hash == prev && self.audit_key.verify_head(tenant, h.seq, &prev, &h.mac)
            }
        };
        if !head_ok {
            return Ok(invalid(
                last,
                None,
                format!("the chain ends at record {last} but its signed head is at record {end}"),
            ));
        }
        Ok(AuditVerification { valid: true, checked: last, first_invalid_id: None, reason: None })
    }
}
