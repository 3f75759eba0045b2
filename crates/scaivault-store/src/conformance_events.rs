//! Conformance cases of the event outbox: webhooks, events committed with their change, delivery
//! claims (leases, per-key order), attempts, retries, redelivery and the delivery log.

use scaivault_crypto::{KeyRing, SealContext};

use super::{Dyn, at, path, put, setup, write};
use crate::{
    AttemptOutcome, AttemptRecord, Claim, DEFAULT_TENANT, DeliveryStatus, EventsFnRef, FinishAttempt,
    NewDelivery, NewEvent, SealedWebhookSecret, StoreError, WebhookFilter, WebhookKind, WebhookRecord,
    WriteEffects,
};

fn webhook(ring: &KeyRing, id: &str, name: &str, secret: &[u8]) -> WebhookRecord {
    let ctx = SealContext { tenant: DEFAULT_TENANT, path: "\0webhook/test", version: 1 };
    WebhookRecord {
        tenant: DEFAULT_TENANT.into(),
        id: id.into(),
        kind: WebhookKind::Webhook,
        name: name.into(),
        url: "https://receiver.example/hook".into(),
        events: vec!["secret.updated".into()],
        path_prefix: Some("app/".into()),
        paths: vec!["app/**".into()],
        secret: SealedWebhookSecret { generation: 1, sealed: ring.seal(&ctx, secret).expect("seal") },
        previous: None,
        active: true,
        disabled_reason: None,
        created_at: at(1),
        updated_at: at(1),
    }
}

fn event(id: &str, p: Option<&str>, hooks: &[&str], secs: i64) -> NewEvent {
    NewEvent {
        id: id.into(),
        tenant: DEFAULT_TENANT.into(),
        event_type: "secret.updated".into(),
        path: p.map(str::to_owned),
        created_at: at(secs),
        body: format!("{{\"event_id\":\"{id}\"}}"),
        deliveries: hooks
            .iter()
            .map(|h| NewDelivery { id: format!("dlv_{id}_{h}"), webhook_id: (*h).into(), claim: None })
            .collect(),
    }
}

fn claim(id: &str, until: i64) -> Claim {
    Claim { id: id.into(), until: at(until) }
}

fn finish<'a>(delivery: &'a str, claim_id: &'a str, outcome: AttemptOutcome, secs: i64) -> FinishAttempt<'a> {
    FinishAttempt {
        tenant: DEFAULT_TENANT,
        delivery_id: delivery,
        webhook_id: "wh_a",
        claim_id,
        attempt: AttemptRecord {
            at: at(secs),
            response_code: Some(if outcome == AttemptOutcome::Delivered { 200 } else { 500 }),
            error: None,
            duration_ms: 3,
        },
        outcome,
        disable_webhook: None,
    }
}

pub async fn webhooks_round_trip(store: Dyn) {
    let ring = setup(&store).await;
    let w = webhook(&ring, "wh_a", "first", b"s3cret-value");
    store.create_webhook(&w).await.expect("create");
    assert!(matches!(
        store.create_webhook(&webhook(&ring, "wh_b", "first", b"x")).await,
        Err(StoreError::AlreadyExists)
    ));
    let got = store.get_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await.expect("get");
    assert_eq!((got.name.as_str(), got.url.as_str()), ("first", "https://receiver.example/hook"));
    assert_eq!(got.paths, vec!["app/**".to_owned()]);
    let ctx = SealContext { tenant: DEFAULT_TENANT, path: "\0webhook/test", version: 1 };
    assert_eq!(ring.open(&ctx, &got.secret.sealed).expect("open").expose(), b"s3cret-value");
    assert!(matches!(
        store.get_webhook(DEFAULT_TENANT, WebhookKind::Subscription, "wh_a").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_webhook("tnt_other", WebhookKind::Webhook, "wh_a").await,
        Err(StoreError::NotFound)
    ));

    let mut changed = got.clone();
    changed.name = "renamed".into();
    changed.previous = Some((changed.secret.clone(), at(99)));
    changed.active = false;
    store.update_webhook(&changed).await.expect("update");
    let got = store.get_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await.expect("get");
    assert_eq!(got.name, "renamed");
    assert_eq!(got.previous.as_ref().map(|(_, u)| *u), Some(at(99)));
    assert!(store.active_webhooks(DEFAULT_TENANT).await.expect("active").is_empty());

    store.create_webhook(&webhook(&ring, "wh_b", "second", b"y")).await.expect("create b");
    let listed = store.list_webhooks(DEFAULT_TENANT, WebhookKind::Webhook, None, 1).await.expect("list");
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh_a"]);
    let listed =
        store.list_webhooks(DEFAULT_TENANT, WebhookKind::Webhook, Some("wh_a"), 10).await.expect("list");
    assert_eq!(listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["wh_b"]);
    assert_eq!(
        store.active_webhooks(DEFAULT_TENANT).await.expect("active"),
        vec![WebhookFilter {
            id: "wh_b".into(),
            events: vec!["secret.updated".into()],
            path_prefix: Some("app/".into()),
            paths: vec!["app/**".into()],
        }]
    );
    store.delete_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await.expect("delete");
    assert!(matches!(
        store.delete_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await,
        Err(StoreError::NotFound)
    ));
}

/// Events commit with the write that caused them, and vanish with a write that fails.
pub async fn events_commit_with_their_write(store: Dyn) {
    let ring = setup(&store).await;
    store.create_webhook(&webhook(&ring, "wh_a", "a", b"k")).await.expect("create");
    let p = path("app/db");
    let build = |version: u64, created: bool, _rotated: bool| {
        let mut e = event(&format!("evt_v{version}"), Some("app/db"), &["wh_a"], 2);
        e.event_type = if created { "secret.created" } else { "secret.updated" }.into();
        Ok(vec![e])
    };
    let events = EventsFnRef(&build);
    let effects = WriteEffects { events: Some(&events), ..WriteEffects::default() };
    let seal = |v: u64| ring.seal(&SealContext { tenant: DEFAULT_TENANT, path: "app/db", version: v }, b"{}");
    store.write_secret(write(DEFAULT_TENANT, &p, 2), &seal, effects).await.expect("write");
    // A check-and-set that fails writes no event either.
    let mut stale = write(DEFAULT_TENANT, &p, 3);
    stale.cas = Some(7);
    assert!(store.write_secret(stale, &seal, effects).await.is_err());

    let claimed = store.claim_deliveries(at(10), &claim("clm_1", 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!(
        (d.event_id.as_str(), d.event_type.as_str(), d.url.as_str()),
        ("evt_v1", "secret.created", "https://receiver.example/hook")
    );
    assert_eq!((d.attempts, d.retry_step, d.body.as_str()), (0, 0, "{\"event_id\":\"evt_v1\"}"));
    let all = store.events_after(0, 10).await.expect("events");
    assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["evt_v1"]);
    assert_eq!(store.last_event_seq().await.expect("seq"), all[0].seq);

    // The other mutations carry their events too.
    store
        .soft_delete(DEFAULT_TENANT, "app/db", at(4), &[event("evt_del", Some("app/db"), &[], 4)])
        .await
        .expect("del");
    store
        .undelete(DEFAULT_TENANT, "app/db", at(5), &[event("evt_undel", Some("app/db"), &[], 5)])
        .await
        .expect("un");
    // Undeleting a live secret changes nothing and appends nothing.
    store
        .undelete(DEFAULT_TENANT, "app/db", at(5), &[event("evt_undel_again", Some("app/db"), &[], 5)])
        .await
        .expect("un again");
    let ids: Vec<String> =
        store.events_after(0, 10).await.expect("events").into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["evt_v1", "evt_del", "evt_undel"]);
    put(&store, &ring, write(DEFAULT_TENANT, &p, 6), "x").await.expect("plain write");
}

/// A claim is a lease: nobody else gets the delivery until it runs out, and only its holder records
/// the attempt. Deliveries of one key to one webhook go out one at a time, in order.
pub async fn claims_lease_and_order_deliveries(store: Dyn) {
    let ring = setup(&store).await;
    store.create_webhook(&webhook(&ring, "wh_a", "a", b"k")).await.expect("create");
    store
        .append_events(&[
            event("evt_1", Some("app/x"), &["wh_a"], 1),
            event("evt_2", Some("app/x"), &["wh_a"], 2),
            event("evt_3", Some("app/y"), &["wh_a"], 3),
        ])
        .await
        .expect("append");
    let first = store.claim_deliveries(at(10), &claim("clm_1", 20), 10).await.expect("claim");
    let ids: Vec<&str> = first.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["dlv_evt_1_wh_a", "dlv_evt_3_wh_a"], "only the head of each key");
    assert!(store.claim_deliveries(at(11), &claim("clm_2", 30), 10).await.expect("claim").is_empty());
    assert!(
        !store
            .finish_attempt(&finish("dlv_evt_1_wh_a", "clm_other", AttemptOutcome::Delivered, 12))
            .await
            .expect("f")
    );
    assert!(
        store
            .finish_attempt(&finish("dlv_evt_1_wh_a", "clm_1", AttemptOutcome::Delivered, 12))
            .await
            .expect("f")
    );
    // The next of app/x is due now; app/y's lease has not run out.
    let next = store.claim_deliveries(at(13), &claim("clm_3", 40), 10).await.expect("claim");
    assert_eq!(next.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["dlv_evt_2_wh_a"]);
    // After the lease, app/y's delivery comes back to another claimer, and the old holder lost it.
    let again = store.claim_deliveries(at(25), &claim("clm_4", 60), 10).await.expect("claim");
    assert_eq!(again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["dlv_evt_3_wh_a"]);
    assert!(
        !store
            .finish_attempt(&finish("dlv_evt_3_wh_a", "clm_1", AttemptOutcome::Delivered, 26))
            .await
            .expect("f")
    );
    assert_eq!(store.claimed_deliveries("clm_4").await.expect("claimed").len(), 1);
}

/// A failed attempt is retried when it is due, not before; the log keeps every attempt; a final
/// failure stops retries; redelivery makes it due again with a fresh schedule.
pub async fn retries_log_and_redelivery(store: Dyn) {
    let ring = setup(&store).await;
    store.create_webhook(&webhook(&ring, "wh_a", "a", b"k")).await.expect("create");
    store.append_events(&[event("evt_1", Some("app/x"), &["wh_a"], 1)]).await.expect("append");
    let d = "dlv_evt_1_wh_a";
    store.claim_deliveries(at(2), &claim("clm_1", 60), 10).await.expect("claim");
    store.finish_attempt(&finish(d, "clm_1", AttemptOutcome::RetryAt(at(100)), 3)).await.expect("retry");
    assert!(store.claim_deliveries(at(99), &claim("clm_2", 200), 10).await.expect("claim").is_empty());
    let c = store.claim_deliveries(at(100), &claim("clm_3", 200), 10).await.expect("claim");
    assert_eq!((c.len(), c[0].attempts, c[0].retry_step), (1, 1, 1));
    store.finish_attempt(&finish(d, "clm_3", AttemptOutcome::Failed, 101)).await.expect("fail");
    assert!(store.claim_deliveries(at(5000), &claim("clm_4", 6000), 10).await.expect("claim").is_empty());

    let log = store.list_deliveries(DEFAULT_TENANT, "wh_a", None, 10).await.expect("log");
    assert_eq!(log.len(), 1);
    let (_, rec) = &log[0];
    assert_eq!((rec.status, rec.attempts.len()), (DeliveryStatus::Failed, 2));
    assert_eq!(rec.attempts[0].at, at(3));
    assert_eq!(rec.attempts[1].response_code, Some(500));
    assert_eq!(rec.path.as_deref(), Some("app/x"));

    assert!(matches!(
        store.redeliver(DEFAULT_TENANT, "wh_a", "dlv_nope", at(200)).await,
        Err(StoreError::NotFound)
    ));
    store.redeliver(DEFAULT_TENANT, "wh_a", d, at(200)).await.expect("redeliver");
    let c = store.claim_deliveries(at(200), &claim("clm_5", 300), 10).await.expect("claim");
    assert_eq!((c.len(), c[0].attempts, c[0].retry_step), (1, 2, 0));
    let mut gone = finish(d, "clm_5", AttemptOutcome::Failed, 201);
    gone.disable_webhook = Some("the receiver answered 410 Gone");
    store.finish_attempt(&gone).await.expect("gone");
    let w = store.get_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await.expect("get");
    assert!(!w.active);
    assert_eq!(w.disabled_reason.as_deref(), Some("the receiver answered 410 Gone"));
    // A disabled webhook's deliveries wait.
    store.append_events(&[event("evt_2", Some("app/z"), &["wh_a"], 202)]).await.expect("append");
    assert!(store.claim_deliveries(at(300), &claim("clm_6", 400), 10).await.expect("claim").is_empty());
    // Deleting the webhook takes its deliveries along.
    store.delete_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_a").await.expect("delete");
    assert!(store.list_deliveries(DEFAULT_TENANT, "wh_a", None, 10).await.expect("log").is_empty());
}

/// Pruning keeps pending deliveries and their events, and drops what finished before the cut.
pub async fn the_outbox_is_pruned_by_age(store: Dyn) {
    let ring = setup(&store).await;
    store.create_webhook(&webhook(&ring, "wh_a", "a", b"k")).await.expect("create");
    store
        .append_events(&[
            event("evt_done", Some("app/x"), &["wh_a"], 1),
            event("evt_waiting", Some("app/y"), &["wh_a"], 1),
            event("evt_none", Some("app/z"), &[], 1),
            event("evt_new", Some("app/w"), &[], 500),
        ])
        .await
        .expect("append");
    let claimed = store.claim_deliveries(at(2), &claim("clm_1", 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    store
        .finish_attempt(&finish("dlv_evt_done_wh_a", "clm_1", AttemptOutcome::Delivered, 3))
        .await
        .expect("done");
    store
        .finish_attempt(&finish("dlv_evt_waiting_wh_a", "clm_1", AttemptOutcome::RetryAt(at(900)), 3))
        .await
        .expect("retry");
    // A write that loaded the filters before a webhook's deletion committed adds its deliveries
    // after it: they can never be claimed, so they go (and their event with them) whatever their age.
    store.create_webhook(&webhook(&ring, "wh_gone", "gone", b"k")).await.expect("create");
    store.delete_webhook(DEFAULT_TENANT, WebhookKind::Webhook, "wh_gone").await.expect("delete");
    store.append_events(&[event("evt_orphan", Some("app/o"), &["wh_gone"], 1)]).await.expect("append");
    assert_eq!(store.prune_outbox(at(100)).await.expect("prune"), 3);
    let left: Vec<String> =
        store.events_after(0, 10).await.expect("events").into_iter().map(|e| e.id).collect();
    assert_eq!(left, ["evt_waiting", "evt_new"]);
    let log = store.list_deliveries(DEFAULT_TENANT, "wh_a", None, 10).await.expect("log");
    assert_eq!(log.iter().map(|(_, d)| d.id.as_str()).collect::<Vec<_>>(), ["dlv_evt_waiting_wh_a"]);
}
