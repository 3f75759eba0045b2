//! Webhooks and subscriptions: registration, secret rolls, the delivery log, test and redelivery.
//!
//! A subscription is a webhook whose `paths` are globs, managed under `/v1/subscriptions`; both are
//! stored alike. Signing secrets are sealed with the key ring (bound to tenant, webhook id and secret
//! generation) and shown only in the answer that generated them.

use chrono::{DateTime, Utc};
use scaivault_api::{
    CreateSubscriptionRequest, CreateWebhookRequest, DeliveryAttempt, DeliveryInfo, DeliveryList,
    RotateWebhookSecretRequest, SubscriptionDelivery, SubscriptionList, SubscriptionResponse,
    UpdateWebhookRequest, WebhookFilters, WebhookList, WebhookResponse, WebhookTestResult,
};
use scaivault_crypto::{SealContext, SealedSecret, SecretBytes, random_id};
use scaivault_domain::{DurationSpec, GlobPattern, Scope};
use scaivault_events::{EventType, check_webhook_url, generate_webhook_secret, parse_webhook_url};
use scaivault_store::{
    Claim, DeliveryRecord, NewDelivery, SealedWebhookSecret, StoreError, WEBHOOK_SEAL_PREFIX, WebhookKind,
    WebhookRecord,
};

use crate::cache::invalidating;
use crate::paging::{decode_cursor, decode_number_cursor, limit, next_cursor};
use crate::{CoreError, Principal, Vault};

const MAX_NAME: usize = 200;
const MAX_SECRET: usize = 1024;
const MIN_SECRET: usize = 8;
const MAX_FILTERS: usize = 100;

/// The seal context path of a webhook's secret (see [`WEBHOOK_SEAL_PREFIX`]).
fn seal_path(id: &str) -> String {
    format!("{WEBHOOK_SEAL_PREFIX}{id}")
}

fn not_found(kind: WebhookKind) -> CoreError {
    CoreError::NotFound(match kind {
        WebhookKind::Webhook => "webhook",
        WebhookKind::Subscription => "subscription",
    })
}

fn check_name(name: &str) -> Result<(), CoreError> {
    if name.trim().is_empty() || name.len() > MAX_NAME {
        return Err(CoreError::InvalidRequest(format!("name must be 1 to {MAX_NAME} characters")));
    }
    Ok(())
}

fn check_secret(secret: &str) -> Result<(), CoreError> {
    if !(MIN_SECRET..=MAX_SECRET).contains(&secret.len()) {
        // Never echo the secret.
        return Err(CoreError::InvalidRequest(format!(
            "secret must be {MIN_SECRET} to {MAX_SECRET} characters (omit it to have one generated)"
        )));
    }
    Ok(())
}

fn check_events(events: &[String]) -> Result<(), CoreError> {
    if events.len() > MAX_FILTERS {
        return Err(CoreError::InvalidRequest(format!("at most {MAX_FILTERS} event types")));
    }
    for e in events {
        e.parse::<EventType>().map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
    }
    Ok(())
}

fn check_paths(paths: &[String]) -> Result<(), CoreError> {
    if paths.len() > MAX_FILTERS {
        return Err(CoreError::InvalidRequest(format!("at most {MAX_FILTERS} path globs")));
    }
    for p in paths {
        GlobPattern::parse(p).map_err(|e| CoreError::InvalidRequest(format!("path glob {p:?}: {e}")))?;
    }
    Ok(())
}

/// Longest time a replaced signing secret keeps signing: a week, like the payment providers that
/// sign webhooks with two secrets during a roll.
const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

fn parse_overlap(raw: Option<&str>, default: std::time::Duration) -> Result<chrono::TimeDelta, CoreError> {
    match raw {
        None => chrono::TimeDelta::from_std(default)
            .map_err(|_| CoreError::Internal("secret overlap out of range".into())),
        Some(s) => {
            let d = DurationSpec::parse(s).map_err(|e| CoreError::InvalidRequest(format!("overlap: {e}")))?;
            if d.as_secs() > MAX_OVERLAP_SECS {
                return Err(CoreError::InvalidRequest("overlap may not be longer than 7d".into()));
            }
            Ok(d.as_chrono())
        }
    }
}

fn webhook_response(w: &WebhookRecord, now: DateTime<Utc>, secret: Option<String>) -> WebhookResponse {
    WebhookResponse {
        id: w.id.clone(),
        name: w.name.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        filters: WebhookFilters { path_prefix: w.path_prefix.clone(), paths: w.paths.clone() },
        active: w.active,
        disabled_reason: w.disabled_reason.clone(),
        previous_secret_expires_at: w.previous.as_ref().map(|(_, until)| *until).filter(|u| *u > now),
        secret,
        created_at: w.created_at,
        updated_at: w.updated_at,
    }
}

fn subscription_response(w: &WebhookRecord, secret: Option<String>) -> SubscriptionResponse {
    SubscriptionResponse {
        id: w.id.clone(),
        name: w.name.clone(),
        paths: w.paths.clone(),
        events: w.events.clone(),
        delivery: SubscriptionDelivery { delivery_type: "webhook".into(), url: w.url.clone(), secret },
        active: w.active,
        created_at: w.created_at,
        updated_at: w.updated_at,
    }
}

fn delivery_info(d: DeliveryRecord) -> DeliveryInfo {
    DeliveryInfo {
        id: d.id,
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        event_type: d.event_type,
        path: d.path,
        status: d.status.as_str().to_owned(),
        next_attempt_at: d.next_attempt_at,
        created_at: d.created_at,
        updated_at: d.updated_at,
        attempts: d
            .attempts
            .into_iter()
            .zip(1u32..)
            .map(|(a, n)| DeliveryAttempt {
                attempt: n,
                at: a.at,
                response_code: a.response_code,
                duration_ms: a.duration_ms,
                error: a.error,
            })
            .collect(),
    }
}

/// What a new webhook or subscription is made of, once its request is checked.
struct NewHook {
    kind: WebhookKind,
    name: String,
    url: String,
    secret: Option<String>,
    events: Vec<String>,
    path_prefix: Option<String>,
    paths: Vec<String>,
}

impl Vault {
    /// Refuses URLs that are malformed or, unless allowed, reach loopback, private, link-local or
    /// metadata addresses.
    async fn check_url(&self, raw: &str) -> Result<String, CoreError> {
        let url = parse_webhook_url(raw).map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
        check_webhook_url(&url, self.events.config.allow_private)
            .await
            .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;
        Ok(url.to_string())
    }

    fn seal_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
        generation: u64,
        secret: &str,
    ) -> Result<SealedWebhookSecret, StoreError> {
        let path = seal_path(id);
        let sealed =
            self.keys.seal(&SealContext { tenant, path: &path, version: generation }, secret.as_bytes())?;
        Ok(SealedWebhookSecret { generation, sealed })
    }

    pub(crate) async fn open_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
        generation: u64,
        sealed: &SealedSecret,
    ) -> Result<SecretBytes, CoreError> {
        let path = seal_path(id);
        self.keys.open_sealed(&SealContext { tenant, path: &path, version: generation }, sealed).await
    }

    async fn create_hook(
        &self,
        principal: &Principal,
        hook: NewHook,
    ) -> Result<(WebhookRecord, Option<String>), CoreError> {
        self.authorize(principal, Scope::SubscriptionsWrite, None).await?;
        check_name(&hook.name)?;
        check_events(&hook.events)?;
        check_paths(&hook.paths)?;
        if let Some(s) = &hook.secret {
            check_secret(s)?;
        }
        let url = self.check_url(&hook.url).await?;
        let generated = match hook.secret {
            Some(_) => None,
            None => Some(generate_webhook_secret()?),
        };
        let secret =
            SecretBytes::new(hook.secret.or_else(|| generated.clone()).unwrap_or_default().into_bytes());
        let prefix = match hook.kind {
            WebhookKind::Webhook => "wh_",
            WebhookKind::Subscription => "sub_",
        };
        let id = random_id(prefix)?;
        let now = self.clock.now();
        let tenant = principal.tenant.as_str();
        let secret_str = std::str::from_utf8(secret.expose())
            .map_err(|_| CoreError::Internal("webhook secret is not UTF-8".into()))?;
        let record = self
            .keys
            .with_budget(|| {
                let (id, url, name) = (&id, &url, &hook.name);
                let (events, path_prefix, paths) = (&hook.events, &hook.path_prefix, &hook.paths);
                async move {
                    let record = WebhookRecord {
                        tenant: tenant.to_owned(),
                        id: id.clone(),
                        kind: hook.kind,
                        name: name.clone(),
                        url: url.clone(),
                        events: events.clone(),
                        path_prefix: path_prefix.clone(),
                        paths: paths.clone(),
                        secret: self.seal_webhook_secret(tenant, id, 1, secret_str)?,
                        previous: None,
                        active: true,
                        disabled_reason: None,
                        created_at: now,
                        updated_at: now,
                    };
                    let stored =
                        invalidating(|| self.webhooks_changed(tenant), self.store.create_webhook(&record))
                            .await;
                    stored?;
                    Ok(record)
                }
            })
            .await
            .map_err(|e| match e {
                CoreError::Conflict(_) => {
                    CoreError::Conflict(format!("the name '{}' is already taken", hook.name))
                }
                other => other,
            })?;
        Ok((record, generated))
    }

    /// `POST /v1/webhooks`
    pub async fn create_webhook(
        &self,
        principal: &Principal,
        req: CreateWebhookRequest,
    ) -> Result<WebhookResponse, CoreError> {
        let hook = NewHook {
            kind: WebhookKind::Webhook,
            name: req.name,
            url: req.url,
            secret: req.secret,
            events: req.events,
            path_prefix: req.filters.path_prefix,
            paths: req.filters.paths,
        };
        let (record, generated) = self.create_hook(principal, hook).await?;
        Ok(webhook_response(&record, self.clock.now(), generated))
    }

    /// `POST /v1/subscriptions`
    pub async fn create_subscription(
        &self,
        principal: &Principal,
        req: CreateSubscriptionRequest,
    ) -> Result<SubscriptionResponse, CoreError> {
        if req.delivery.delivery_type != "webhook" {
            return Err(CoreError::InvalidRequest("delivery.type must be \"webhook\"".into()));
        }
        if req.paths.is_empty() {
            return Err(CoreError::InvalidRequest("paths must name at least one path or glob".into()));
        }
        let hook = NewHook {
            kind: WebhookKind::Subscription,
            name: req.name,
            url: req.delivery.url,
            secret: req.delivery.secret,
            events: req.events,
            path_prefix: None,
            paths: req.paths,
        };
        let (record, generated) = self.create_hook(principal, hook).await?;
        Ok(subscription_response(&record, generated))
    }

    async fn get_hook(
        &self,
        principal: &Principal,
        scope: Scope,
        kind: WebhookKind,
        id: &str,
    ) -> Result<WebhookRecord, CoreError> {
        self.authorize(principal, scope, None).await?;
        self.store.get_webhook(&principal.tenant, kind, id).await.map_err(|e| match e {
            StoreError::NotFound => not_found(kind),
            other => other.into(),
        })
    }

    /// `GET /v1/webhooks/{id}`
    pub async fn get_webhook(&self, principal: &Principal, id: &str) -> Result<WebhookResponse, CoreError> {
        let w = self.get_hook(principal, Scope::SubscriptionsRead, WebhookKind::Webhook, id).await?;
        Ok(webhook_response(&w, self.clock.now(), None))
    }

    /// `GET /v1/subscriptions/{id}`
    pub async fn get_subscription(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<SubscriptionResponse, CoreError> {
        let w = self.get_hook(principal, Scope::SubscriptionsRead, WebhookKind::Subscription, id).await?;
        Ok(subscription_response(&w, None))
    }

    async fn list_hooks(
        &self,
        principal: &Principal,
        kind: WebhookKind,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<(Vec<WebhookRecord>, Option<String>), CoreError> {
        self.authorize(principal, Scope::SubscriptionsRead, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor(kind.as_str(), cursor)?;
        let hooks = self.store.list_webhooks(&principal.tenant, kind, after.as_deref(), limit).await?;
        let next = next_cursor(kind.as_str(), &hooks, limit, |w| w.id.clone());
        Ok((hooks, next))
    }

    /// `GET /v1/webhooks`
    pub async fn list_webhooks(
        &self,
        principal: &Principal,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<WebhookList, CoreError> {
        let (hooks, next_cursor) = self.list_hooks(principal, WebhookKind::Webhook, limit, cursor).await?;
        let now = self.clock.now();
        Ok(WebhookList {
            webhooks: hooks.iter().map(|w| webhook_response(w, now, None)).collect(),
            next_cursor,
        })
    }

    /// `GET /v1/subscriptions`
    pub async fn list_subscriptions(
        &self,
        principal: &Principal,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SubscriptionList, CoreError> {
        let (hooks, next_cursor) =
            self.list_hooks(principal, WebhookKind::Subscription, limit, cursor).await?;
        Ok(SubscriptionList {
            subscriptions: hooks.iter().map(|w| subscription_response(w, None)).collect(),
            next_cursor,
        })
    }

    /// Replaces the secret: the old one keeps signing beside the new one until the overlap ends.
    fn roll_secret(
        &self,
        w: &mut WebhookRecord,
        secret: &str,
        overlap: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let next = self.seal_webhook_secret(&w.tenant, &w.id, w.secret.generation + 1, secret)?;
        let old = std::mem::replace(&mut w.secret, next);
        w.previous = (overlap > chrono::TimeDelta::zero()).then(|| (old, now + overlap));
        Ok(())
    }

    /// `PATCH /v1/webhooks/{id}`
    pub async fn update_webhook(
        &self,
        principal: &Principal,
        id: &str,
        req: UpdateWebhookRequest,
    ) -> Result<WebhookResponse, CoreError> {
        let mut w = self.get_hook(principal, Scope::SubscriptionsWrite, WebhookKind::Webhook, id).await?;
        if let Some(name) = req.name {
            check_name(&name)?;
            w.name = name;
        }
        if let Some(url) = req.url {
            w.url = self.check_url(&url).await?;
        }
        if let Some(events) = req.events {
            check_events(&events)?;
            w.events = events;
        }
        if let Some(filters) = req.filters {
            check_paths(&filters.paths)?;
            w.path_prefix = filters.path_prefix;
            w.paths = filters.paths;
        }
        if let Some(active) = req.active {
            w.active = active;
            if active {
                w.disabled_reason = None;
            }
        }
        let overlap = parse_overlap(req.secret_overlap.as_deref(), self.events.config.secret_overlap)?;
        if let Some(s) = &req.secret {
            check_secret(s)?;
        }
        let now = self.clock.now();
        w.updated_at = now;
        self.keys
            .with_budget(|| {
                let mut w = w.clone();
                let secret = req.secret.as_deref();
                async move {
                    if let Some(s) = secret {
                        self.roll_secret(&mut w, s, overlap, now)?;
                    }
                    let stored =
                        invalidating(|| self.webhooks_changed(&w.tenant), self.store.update_webhook(&w))
                            .await;
                    stored?;
                    Ok(webhook_response(&w, now, None))
                }
            })
            .await
            .map_err(|e| match e {
                CoreError::Conflict(_) => CoreError::Conflict("that name is already taken".into()),
                other => other,
            })
    }

    /// `POST /v1/webhooks/{id}/rotate-secret`: a new secret (generated and shown once when none is
    /// given); deliveries carry signatures from both until the overlap ends.
    pub async fn rotate_webhook_secret(
        &self,
        principal: &Principal,
        id: &str,
        req: RotateWebhookSecretRequest,
    ) -> Result<WebhookResponse, CoreError> {
        let w = self.get_hook(principal, Scope::SubscriptionsWrite, WebhookKind::Webhook, id).await?;
        let overlap = parse_overlap(req.overlap.as_deref(), self.events.config.secret_overlap)?;
        if let Some(s) = &req.secret {
            check_secret(s)?;
        }
        let generated = match req.secret {
            Some(_) => None,
            None => Some(generate_webhook_secret()?),
        };
        let secret = req.secret.as_deref().or(generated.as_deref()).unwrap_or_default();
        let now = self.clock.now();
        let w = self
            .keys
            .with_budget(|| {
                let mut w = w.clone();
                async move {
                    self.roll_secret(&mut w, secret, overlap, now)?;
                    w.updated_at = now;
                    let stored =
                        invalidating(|| self.webhooks_changed(&w.tenant), self.store.update_webhook(&w))
                            .await;
                    stored?;
                    Ok(w)
                }
            })
            .await?;
        Ok(webhook_response(&w, now, generated))
    }

    /// `DELETE /v1/webhooks/{id}` and `DELETE /v1/subscriptions/{id}`, with their deliveries.
    pub async fn delete_hook(
        &self,
        principal: &Principal,
        subscription: bool,
        id: &str,
    ) -> Result<(), CoreError> {
        let kind = if subscription { WebhookKind::Subscription } else { WebhookKind::Webhook };
        self.authorize(principal, Scope::SubscriptionsWrite, None).await?;
        let deleted = invalidating(
            || self.webhooks_changed(&principal.tenant),
            self.store.delete_webhook(&principal.tenant, kind, id),
        )
        .await;
        deleted.map_err(|e| match e {
            StoreError::NotFound => not_found(kind),
            other => other.into(),
        })
    }

    /// `GET /v1/webhooks/{id}/deliveries`: newest first, each with its attempts.
    pub async fn webhook_deliveries(
        &self,
        principal: &Principal,
        id: &str,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<DeliveryList, CoreError> {
        self.get_hook(principal, Scope::SubscriptionsRead, WebhookKind::Webhook, id).await?;
        let limit = limit(limit_param)?;
        let before = decode_number_cursor("deliveries", cursor)?;
        let page = self.store.list_deliveries(&principal.tenant, id, before, limit).await?;
        let next_cursor = next_cursor("deliveries", &page, limit, |(seq, _)| seq.to_string());
        Ok(DeliveryList {
            deliveries: page.into_iter().map(|(_, d)| delivery_info(d)).collect(),
            next_cursor,
        })
    }

    /// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/redeliver`: due again now, with a fresh retry
    /// schedule; the receiver gets the same event id, signed anew.
    pub async fn redeliver(
        &self,
        principal: &Principal,
        id: &str,
        delivery_id: &str,
    ) -> Result<(), CoreError> {
        self.get_hook(principal, Scope::SubscriptionsWrite, WebhookKind::Webhook, id).await?;
        self.store.redeliver(&principal.tenant, id, delivery_id, self.clock.now()).await.map_err(
            |e| match e {
                StoreError::NotFound => CoreError::NotFound("delivery"),
                other => other.into(),
            },
        )?;
        self.events.wake.notify_one();
        Ok(())
    }

    /// `POST /v1/webhooks/{id}/test`: a `webhook.test` event delivered now, once, and recorded in the
    /// delivery log like any other.
    pub async fn test_webhook(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<WebhookTestResult, CoreError> {
        let w = self.get_hook(principal, Scope::SubscriptionsWrite, WebhookKind::Webhook, id).await?;
        let now = self.clock.now();
        let claim = Claim { id: random_id("clm_")?, until: now + self.delivery_lease() };
        let emitter = crate::events::Emitter::without_webhooks(&w.tenant);
        let data = serde_json::json!({ "webhook_id": w.id, "message": "a test event from ScaiVault" });
        let mut event = emitter.event(EventType::WebhookTest, None, data, now)?;
        let delivery_id = random_id("dlv_")?;
        event.deliveries = vec![NewDelivery {
            id: delivery_id.clone(),
            webhook_id: w.id.clone(),
            claim: Some(claim.clone()),
        }];
        self.store.append_events(std::slice::from_ref(&event)).await?;
        let claimed = self.store.claimed_deliveries(&claim.id).await?;
        let delivery = claimed.first().ok_or_else(|| CoreError::Internal("test delivery vanished".into()))?;
        let attempt = self.attempt_delivery(delivery, &claim.id, false).await?;
        Ok(WebhookTestResult {
            delivery_id,
            status: if attempt.succeeded() { "success" } else { "failed" }.into(),
            response_code: attempt.response_code,
            duration_ms: attempt.duration_ms,
            error: attempt.error,
        })
    }
}
