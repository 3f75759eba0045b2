//! The delivery worker: claims due deliveries from the outbox (a lease, so replicas never send the
//! same attempt twice), signs and sends each, records the attempt, and schedules a retry or gives up.

use std::sync::Arc;

use chrono::TimeDelta;
use scaivault_crypto::{SecretBytes, random_id};
use scaivault_events::{Attempt, EventType, sign_delivery};
use scaivault_store::{AttemptOutcome, AttemptRecord, Claim, ClaimedDelivery, FinishAttempt};
use tokio::sync::{Semaphore, watch};

use crate::{CoreError, Vault};

/// Deliveries in flight at once in one process.
const MAX_IN_FLIGHT: usize = 64;
/// Deliveries claimed per round trip.
const CLAIM_BATCH: u32 = 32;
/// How often a worker prunes the outbox.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Vault {
    /// How long a claim holds a delivery: longer than any attempt can take, so an attempt in flight is
    /// never sent again by another worker; a crashed worker's deliveries come back after it.
    pub(crate) fn delivery_lease(&self) -> TimeDelta {
        TimeDelta::from_std(self.events.config.delivery_timeout).unwrap_or(TimeDelta::seconds(10))
            + TimeDelta::seconds(5)
    }

    /// Signs with the current secret and, during a roll's overlap, the previous one too.
    async fn signing_secrets(&self, d: &ClaimedDelivery) -> Result<Vec<SecretBytes>, CoreError> {
        let now = self.clock.now();
        let mut out = vec![
            self.open_webhook_secret(&d.tenant, &d.webhook_id, d.secret.generation, &d.secret.sealed).await?,
        ];
        if let Some((prev, until)) = &d.previous
            && *until > now
        {
            out.push(
                self.open_webhook_secret(&d.tenant, &d.webhook_id, prev.generation, &prev.sealed).await?,
            );
        }
        Ok(out)
    }

    /// One attempt of a claimed delivery, recorded with its outcome. With `retry`, a failure is
    /// rescheduled on the retry schedule until it runs out; without, it is final (a test delivery).
    pub(crate) async fn attempt_delivery(
        &self,
        d: &ClaimedDelivery,
        claim_id: &str,
        retry: bool,
    ) -> Result<Attempt, CoreError> {
        let secrets = self.signing_secrets(d).await?;
        let secrets: Vec<&str> =
            secrets.iter().filter_map(|s| std::str::from_utf8(s.expose()).ok()).collect();
        let sent_at = self.clock.now();
        let headers = sign_delivery(
            &secrets,
            &d.event_id,
            &d.event_type,
            &d.id,
            sent_at.timestamp(),
            d.body.as_bytes(),
        );
        drop(secrets);
        let attempt = self.events.sender.send(&d.url, &headers, d.body.clone().into_bytes()).await;
        drop(headers);
        let schedule = &self.events.config.retry_schedule;
        let now = self.clock.now();
        let outcome = if attempt.succeeded() {
            AttemptOutcome::Delivered
        } else if retry && !attempt.gone && (d.retry_step as usize) < schedule.len() {
            let delay = TimeDelta::from_std(schedule[d.retry_step as usize]).unwrap_or(TimeDelta::MAX);
            AttemptOutcome::RetryAt(now.checked_add_signed(delay).unwrap_or(now))
        } else {
            AttemptOutcome::Failed
        };
        let finish = FinishAttempt {
            tenant: &d.tenant,
            delivery_id: &d.id,
            webhook_id: &d.webhook_id,
            claim_id,
            attempt: AttemptRecord {
                at: sent_at,
                response_code: attempt.response_code,
                error: attempt.error.clone(),
                duration_ms: attempt.duration_ms,
            },
            outcome,
            disable_webhook: attempt.gone.then_some("the receiver answered 410 Gone"),
        };
        let counter = match outcome {
            AttemptOutcome::Delivered => &self.events.outcomes.delivered,
            AttemptOutcome::RetryAt(_) => &self.events.outcomes.retried,
            AttemptOutcome::Failed => &self.events.outcomes.failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let finished = self.store.finish_attempt(&finish).await;
        if finish.disable_webhook.is_some() {
            self.webhooks_changed(&d.tenant);
        }
        if !finished? {
            tracing::warn!(delivery = %d.id, "delivery lease expired before its attempt was recorded");
        } else if outcome == AttemptOutcome::Failed
            && retry
            && d.event_type == EventType::RotationDue.as_str()
        {
            // A due rotation nobody could be told about has failed.
            let event: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
            if let (Some(path), Some(true)) = (event["path"].as_str(), event["data"]["due_now"].as_bool()) {
                self.rotation_undelivered(&d.tenant, path).await?;
            }
        }
        tracing::debug!(
            delivery = %d.id,
            webhook = %d.webhook_id,
            event_type = %d.event_type,
            status = attempt.response_code,
            outcome = ?outcome,
            "webhook delivery attempted"
        );
        Ok(attempt)
    }

    /// Sends due deliveries until `shutdown` turns true: woken by this process's changes, and polling
    /// for retries and for other replicas' changes.
    pub async fn run_delivery_worker(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut pruned_at: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                if let Err(e) = self.prune_outbox().await {
                    tracing::warn!(error = %e.detail(), "pruning the event outbox failed");
                }
            }
            // A free slot first: with every slot busy, the next claim waits for an attempt to end.
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = shutdown.changed() => continue,
            };
            let want = (1 + slots.available_permits()).min(CLAIM_BATCH as usize) as u32;
            let mut claimed_all = false;
            match self.claim_batch(want).await {
                Ok((claim_id, batch)) => {
                    claimed_all = batch.len() as u32 == want;
                    let mut first = Some(first);
                    for d in batch {
                        let permit = match first.take() {
                            Some(p) => p,
                            None => match slots.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => return,
                            },
                        };
                        let vault = self.clone();
                        let claim_id = claim_id.clone();
                        tokio::spawn(async move {
                            if let Err(e) = vault.attempt_delivery(&d, &claim_id, true).await {
                                tracing::warn!(delivery = %d.id, error = %e, "webhook delivery not recorded");
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
            if claimed_all {
                continue;
            }
            tokio::select! {
                _ = self.events.wake.notified() => {}
                _ = tokio::time::sleep(self.events.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Drops finished deliveries and delivered events older than the retention.
    pub async fn prune_outbox(&self) -> Result<u64, CoreError> {
        let keep = TimeDelta::from_std(self.events.config.retention).unwrap_or(TimeDelta::days(30));
        let pruned = self.store.prune_outbox(self.clock.now() - keep).await?;
        if pruned > 0 {
            tracing::info!(events = pruned, "pruned the event outbox");
        }
        Ok(pruned)
    }

    async fn claim_batch(&self, limit: u32) -> Result<(String, Vec<ClaimedDelivery>), CoreError> {
        let now = self.clock.now();
        let claim = Claim { id: random_id("clm_")?, until: now + self.delivery_lease() };
        let batch = self.store.claim_deliveries(now, &claim, limit).await?;
        Ok((claim.id, batch))
    }
}
