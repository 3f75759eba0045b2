//! The conformance suite: every storage backend runs exactly these cases, through
//! [`conformance_suite!`](crate::conformance_suite), against a fresh store per case.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scaivault_crypto::{KeyRing, RootKey, SealContext, hash_token};
use scaivault_domain::{SecretMetadata, SecretPath, SecretType};

use crate::{
    BindingRecord, DEFAULT_TENANT, NewToken, PartnerRecord, PolicyRecord, SecretListQuery, Store, StoreError,
    TenantRecord, WriteOutcome, WriteSecret,
};

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an async expression giving
/// `Option<Arc<dyn Store>>` (a fresh, empty store), or `None` to skip (a notice is the factory's job).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            write_then_read, versions_are_consecutive, cas_rules, a_write_checked_against_a_changed_type_is_refused, concurrent_writers_get_gapless_versions,
            pruning_past_max_versions, metadata_kept_unless_given, shrinking_max_versions_prunes,
            soft_delete_and_undelete, destroy_versions, list_filters_and_pages, tenants_are_isolated,
            bootstrap_happens_once, tokens_find_list_revoke, revoking_a_token_revokes_its_tree, master_keys_and_wraps, rewrap_flow,
            moved_ciphertext_never_opens, policies_and_bindings, policy_epoch_tracks_every_change,
            partners_and_tenants, audit_chains, concurrent_audit_appends_keep_one_chain,
            a_write_and_its_audit_record_commit_together, concurrent_writes_fail_alone,
            a_write_refused_for_its_text_fails_alone,
            cut_off_writes_leave_all_or_nothing, webhooks_round_trip,
            events_commit_with_their_write, claims_lease_and_order_deliveries, retries_log_and_redelivery,
            rotation_policies_round_trip, schedules_move_only_from_the_revision_they_read,
            a_deleted_secrets_schedule_is_paused, a_write_completes_a_waiting_rotation, the_outbox_is_pruned_by_age, federation_backends_round_trip,
            mounts_never_overlap, sync_runs_lease_and_path_states);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(store) = $make.await {
                    $crate::conformance::$case(store).await;
                }
            }
        )*
    };
}

#[path = "conformance_events.rs"]
mod events;
pub use events::{
    claims_lease_and_order_deliveries, events_commit_with_their_write, retries_log_and_redelivery,
    the_outbox_is_pruned_by_age, webhooks_round_trip,
};

#[path = "conformance_group.rs"]
mod group_writes;
pub use group_writes::{group_write, postgres_test_url};

#[path = "conformance_federation.rs"]
mod federation;
pub use federation::{
    federation_backends_round_trip, mounts_never_overlap, replicas_never_nest_mounts,
    replicas_stop_at_the_backend_limit, sync_runs_lease_and_path_states,
};

#[path = "conformance_rotation.rs"]
mod rotation;
pub use rotation::{
    a_deleted_secrets_schedule_is_paused, a_write_completes_a_waiting_rotation, rotation_policies_round_trip,
    schedules_move_only_from_the_revision_they_read,
};

type Dyn = Arc<dyn Store>;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("valid time")
}

fn path(p: &str) -> SecretPath {
    SecretPath::parse(p).expect("valid path")
}

async fn setup(store: &Dyn) -> KeyRing {
    let mut ring = KeyRing::new(RootKey::from_bytes(&[42u8; 32]).expect("key"));
    let stored = ring.create_master_key(1).expect("master key");
    ring.add_wrap_budget(1, 1_000_000);
    store.bootstrap(DEFAULT_TENANT, token("tok_root", b"root", true)).await.expect("bootstrap");
    store.insert_master_key(&stored, at(0)).await.expect("master key");
    ring
}

fn token(id: &str, secret: &[u8], is_root: bool) -> NewToken {
    NewToken {
        id: id.into(),
        tenant: DEFAULT_TENANT.into(),
        hash: hash_token(secret),
        name: id.into(),
        identity_type: "user".into(),
        identity_id: "root".into(),
        scopes: vec!["admin".into()],
        groups: vec!["ops".into()],
        is_root,
        roles: Vec::new(),
        created_by: "system".into(),
        created_at: at(0),
        expires_at: None,
        parent: None,
    }
}

fn write<'a>(tenant: &'a str, p: &'a SecretPath, now: i64) -> WriteSecret<'a> {
    WriteSecret {
        tenant,
        path: p,
        secret_type: None,
        checked_type: None,
        metadata: None,
        max_versions: None,
        cas: None,
        created_by: "user:alice",
        now: at(now),
    }
}

async fn put(
    store: &Dyn,
    ring: &KeyRing,
    w: WriteSecret<'_>,
    value: &str,
) -> Result<WriteOutcome, StoreError> {
    let tenant = w.tenant.to_owned();
    let p = w.path.as_str().to_owned();
    let seal =
        move |version: u64| ring.seal(&SealContext { tenant: &tenant, path: &p, version }, value.as_bytes());
    store.write_secret(w, &seal, crate::WriteEffects::default()).await
}

/// [`put`] with its audit record, which `entry` makes from the version the write gets.
async fn put_audited(
    store: &Dyn,
    ring: &KeyRing,
    w: WriteSecret<'_>,
    value: &str,
    entry: &(dyn Fn(u64) -> crate::NewAuditEntry + Send + Sync),
) -> Result<WriteOutcome, StoreError> {
    let key = audit_test_key();
    let sign = move |t: &str, seq: u64, h: &[u8; 32]| key.sign_head(t, seq, h);
    let build = |version: u64, _: bool| entry(version);
    let append = crate::AuditAppend { build: &build, chain: &scaivault_crypto::chain_hash, sign: &sign };
    let tenant = w.tenant.to_owned();
    let p = w.path.as_str().to_owned();
    let seal =
        move |version: u64| ring.seal(&SealContext { tenant: &tenant, path: &p, version }, value.as_bytes());
    let effects = crate::WriteEffects { audit: Some(&append), ..Default::default() };
    store.write_secret(w, &seal, effects).await
}

async fn get(store: &Dyn, ring: &KeyRing, p: &str, version: Option<u64>) -> Result<String, StoreError> {
    let s = store.read_secret(DEFAULT_TENANT, p, version).await?;
    let sealed = s.version.sealed.ok_or(StoreError::VersionNotFound(s.version.version))?;
    let ctx = SealContext { tenant: DEFAULT_TENANT, path: p, version: s.version.version };
    let plain = ring.open(&ctx, &sealed)?;
    Ok(String::from_utf8(plain.expose().to_vec()).expect("utf8"))
}

pub async fn write_then_read(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("app/db/password");
    let mut w = write(DEFAULT_TENANT, &p, 1);
    w.secret_type = Some(SecretType::Kv);
    w.metadata = Some(SecretMetadata {
        description: Some("db".into()),
        tags: vec!["prod".into()],
        ..Default::default()
    });
    let out = put(&store, &ring, w, "v1").await.expect("write");
    assert_eq!((out.version, out.created), (1, true));
    assert_eq!(out.created_at, at(1));
    assert_eq!(get(&store, &ring, "app/db/password", None).await.expect("read"), "v1");
    let s = store.read_secret(DEFAULT_TENANT, "app/db/password", None).await.expect("read");
    assert_eq!(s.head.secret_type, SecretType::Kv);
    assert_eq!(s.head.metadata.tags, vec!["prod".to_string()]);
    assert_eq!(s.version.created_by, "user:alice");
    assert!(matches!(
        store.read_secret(DEFAULT_TENANT, "app/db/other", None).await,
        Err(StoreError::SecretNotFound)
    ));
    assert!(matches!(
        store.read_secret(DEFAULT_TENANT, "app/db/password", Some(2)).await,
        Err(StoreError::VersionNotFound(2))
    ));
}

pub async fn versions_are_consecutive(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("a/b");
    for i in 1..=5u64 {
        let out =
            put(&store, &ring, write(DEFAULT_TENANT, &p, i as i64), &format!("v{i}")).await.expect("write");
        assert_eq!(out.version, i);
        assert_eq!(out.created, i == 1);
    }
    for i in 1..=5u64 {
        assert_eq!(get(&store, &ring, "a/b", Some(i)).await.expect("read"), format!("v{i}"));
    }
    let (head, versions) = store.list_versions(DEFAULT_TENANT, "a/b").await.expect("versions");
    assert_eq!(head.current_version, 5);
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![5, 4, 3, 2, 1]);
    assert!(versions.iter().all(|v| v.sealed.is_none()), "version lists carry no ciphertext");
}

/// A write without a type, whose data was checked against the type the secret had, is refused if
/// another write changed the type in between: it would otherwise store, say, numbers under `kv`.
pub async fn a_write_checked_against_a_changed_type_is_refused(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("typed/x");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 1), "v1").await.expect("v1");
    let typed = WriteSecret { secret_type: Some(SecretType::Kv), ..write(DEFAULT_TENANT, &p, 2) };
    put(&store, &ring, typed, "v2").await.expect("typed write");
    let stale = WriteSecret { checked_type: Some(SecretType::Json), ..write(DEFAULT_TENANT, &p, 3) };
    assert!(matches!(
        put(&store, &ring, stale, "v3").await,
        Err(StoreError::TypeChanged { current: SecretType::Kv })
    ));
    let fresh = WriteSecret { checked_type: Some(SecretType::Kv), ..write(DEFAULT_TENANT, &p, 3) };
    assert_eq!(put(&store, &ring, fresh, "v3").await.expect("checked against kv").version, 3);
}

pub async fn cas_rules(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("cas/x");
    let mut w = write(DEFAULT_TENANT, &p, 1);
    w.cas = Some(1);
    assert!(matches!(put(&store, &ring, w.clone(), "x").await, Err(StoreError::CasMismatch { current: 0 })));
    w.cas = Some(0);
    put(&store, &ring, w.clone(), "x").await.expect("cas 0 on new");
    assert!(matches!(put(&store, &ring, w.clone(), "y").await, Err(StoreError::CasMismatch { current: 1 })));
    w.cas = Some(1);
    assert_eq!(put(&store, &ring, w.clone(), "y").await.expect("cas 1").version, 2);
    assert_eq!(get(&store, &ring, "cas/x", None).await.expect("read"), "y");
}

pub async fn concurrent_writers_get_gapless_versions(store: Dyn) {
    let ring = Arc::new(setup(&store).await);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let ring = ring.clone();
        tasks.push(tokio::spawn(async move {
            let p = path("hot/path");
            put(&store, &ring, write(DEFAULT_TENANT, &p, i), &format!("w{i}")).await.expect("write").version
        }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(got.insert(t.await.expect("join")), "duplicate version");
    }
    assert_eq!(got, (1..=32).collect::<BTreeSet<u64>>());
    let (head, versions) = store.list_versions(DEFAULT_TENANT, "hot/path").await.expect("versions");
    assert_eq!(head.current_version, 32);
    assert_eq!(versions.len(), 10, "default max_versions keeps ten");
}

pub async fn pruning_past_max_versions(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("prune/me");
    for i in 1..=5 {
        let mut w = write(DEFAULT_TENANT, &p, i);
        w.max_versions = Some(3);
        put(&store, &ring, w, &format!("v{i}")).await.expect("write");
    }
    for v in [1, 2] {
        assert!(
            matches!(get(&store, &ring, "prune/me", Some(v)).await, Err(StoreError::VersionNotFound(x)) if x == v)
        );
    }
    for v in 3..=5 {
        assert_eq!(get(&store, &ring, "prune/me", Some(v)).await.expect("kept"), format!("v{v}"));
    }
    let (_, versions) = store.list_versions(DEFAULT_TENANT, "prune/me").await.expect("versions");
    assert_eq!(versions.len(), 3);
}

pub async fn metadata_kept_unless_given(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("meta/x");
    let mut w = write(DEFAULT_TENANT, &p, 1);
    w.secret_type = Some(SecretType::Password);
    w.metadata = Some(SecretMetadata { owner: Some("team:a".into()), ..Default::default() });
    w.max_versions = Some(4);
    put(&store, &ring, w, "1").await.expect("write");
    let out = put(&store, &ring, write(DEFAULT_TENANT, &p, 2), "2").await.expect("write");
    assert_eq!(out.head.secret_type, SecretType::Password);
    assert_eq!(out.head.metadata.owner.as_deref(), Some("team:a"));
    assert_eq!(out.head.max_versions, 4);
    let head = store
        .update_metadata(
            DEFAULT_TENANT,
            "meta/x",
            Some(SecretMetadata { tags: vec!["t".into()], ..Default::default() }),
            None,
            at(3),
            &[],
        )
        .await
        .expect("patch");
    assert_eq!(head.metadata.tags, vec!["t".to_string()]);
    assert_eq!(head.metadata.owner, None);
    assert_eq!(head.current_version, 2);
    assert!(matches!(
        store.update_metadata(DEFAULT_TENANT, "meta/none", None, Some(3), at(3), &[]).await,
        Err(StoreError::SecretNotFound)
    ));
}

pub async fn shrinking_max_versions_prunes(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("shrink/x");
    for i in 1..=6 {
        put(&store, &ring, write(DEFAULT_TENANT, &p, i), &format!("v{i}")).await.expect("write");
    }
    store.update_metadata(DEFAULT_TENANT, "shrink/x", None, Some(2), at(7), &[]).await.expect("patch");
    let (_, versions) = store.list_versions(DEFAULT_TENANT, "shrink/x").await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![6, 5]);
}

pub async fn soft_delete_and_undelete(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("del/x");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 1), "a").await.expect("write");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 2), "b").await.expect("write");
    store.soft_delete(DEFAULT_TENANT, "del/x", at(3), &[]).await.expect("delete");
    assert!(matches!(
        store.read_secret(DEFAULT_TENANT, "del/x", None).await,
        Err(StoreError::SecretNotFound)
    ));
    // The head is still there for a write that revives it (its type and settings carry over).
    let head = store.secret_head(DEFAULT_TENANT, "del/x").await.expect("head").expect("deleted head");
    assert_eq!((head.current_version, head.deleted_at), (2, Some(at(3))));
    assert!(store.secret_head(DEFAULT_TENANT, "del/none").await.expect("head").is_none());
    assert!(matches!(
        store.soft_delete(DEFAULT_TENANT, "del/x", at(3), &[]).await,
        Err(StoreError::SecretNotFound)
    ));
    let listed = store
        .list_secrets(DEFAULT_TENANT, SecretListQuery { limit: 100, ..Default::default() })
        .await
        .expect("list");
    assert!(listed.is_empty());
    let (head, restored) = store.undelete(DEFAULT_TENANT, "del/x", at(4), &[]).await.expect("undelete");
    assert_eq!((head.current_version, restored), (2, true));
    let (_, restored) = store.undelete(DEFAULT_TENANT, "del/x", at(4), &[]).await.expect("undelete live");
    assert!(!restored, "a live secret was reported restored");
    assert_eq!(get(&store, &ring, "del/x", Some(1)).await.expect("history kept"), "a");
    assert!(matches!(
        store.undelete(DEFAULT_TENANT, "del/none", at(4), &[]).await,
        Err(StoreError::SecretNotFound)
    ));
    // A write to a deleted secret revives it with the next version.
    store.soft_delete(DEFAULT_TENANT, "del/x", at(5), &[]).await.expect("delete");
    let out = put(&store, &ring, write(DEFAULT_TENANT, &p, 6), "c").await.expect("write");
    assert_eq!((out.version, out.created), (3, false));
    assert_eq!(get(&store, &ring, "del/x", None).await.expect("read"), "c");
}

pub async fn destroy_versions(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("destroy/x");
    for i in 1..=3 {
        put(&store, &ring, write(DEFAULT_TENANT, &p, i), &format!("v{i}")).await.expect("write");
    }
    // The events are made from the versions erased, and only when there are any.
    let seen = std::sync::Mutex::new(Vec::<Vec<u64>>::new());
    let events = |v: &[u64]| {
        seen.lock().expect("lock").push(v.to_vec());
        Ok(Vec::new())
    };
    let gone = store
        .destroy_versions(DEFAULT_TENANT, "destroy/x", Some(&[1, 3, 9]), at(4), &events)
        .await
        .expect("destroy");
    assert_eq!(gone, vec![1, 3]);
    let again = store
        .destroy_versions(DEFAULT_TENANT, "destroy/x", Some(&[1, 9]), at(4), &events)
        .await
        .expect("destroy nothing");
    assert!(again.is_empty());
    assert_eq!(*seen.lock().expect("lock"), [vec![1, 3]]);
    let s = store.read_secret(DEFAULT_TENANT, "destroy/x", Some(1)).await.expect("row stays");
    assert!(s.version.sealed.is_none() && s.version.destroyed_at.is_some());
    assert_eq!(get(&store, &ring, "destroy/x", Some(2)).await.expect("kept"), "v2");
    let gone =
        store.destroy_versions(DEFAULT_TENANT, "destroy/x", None, at(5), &events).await.expect("destroy all");
    assert_eq!(gone, vec![2]);
    let status = store.key_status().await.expect("status");
    assert_eq!(status[0].data_keys, 0, "destroyed versions keep no data key");
}

pub async fn list_filters_and_pages(store: Dyn) {
    let ring = setup(&store).await;
    for (i, name) in ["app/a", "app/b", "app/c", "apps/x", "other/y"].iter().enumerate() {
        let p = path(name);
        let mut w = write(DEFAULT_TENANT, &p, i as i64);
        w.metadata = Some(SecretMetadata {
            tags: vec![if i % 2 == 0 { "even" } else { "odd" }.into()],
            ..Default::default()
        });
        put(&store, &ring, w, "v").await.expect("write");
    }
    // A list's row says what the secret's head says (written twice, so its creation and its last
    // change differ).
    let b = path("app/b");
    let mut again = write(DEFAULT_TENANT, &b, 10);
    again.metadata = Some(SecretMetadata { tags: vec!["odd".into()], ..Default::default() });
    put(&store, &ring, again, "v2").await.expect("write again");
    let listed = store
        .list_secrets(
            DEFAULT_TENANT,
            SecretListQuery { prefix: Some("app/b"), limit: 100, ..Default::default() },
        )
        .await
        .expect("list");
    let head = store.read_secret(DEFAULT_TENANT, "app/b", None).await.expect("read").head;
    assert_eq!(listed, vec![crate::SecretSummary::from(head)]);
    let names = |v: Vec<crate::SecretSummary>| v.into_iter().map(|h| h.path).collect::<Vec<_>>();
    let q = |prefix, tag, after, limit| SecretListQuery { prefix, tag, after, limit };
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(Some("app/"), None, None, 100)).await.expect("l")),
        ["app/a", "app/b", "app/c"]
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(Some("app"), None, None, 100)).await.expect("l")),
        ["app/a", "app/b", "app/c", "apps/x"]
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(None, Some("odd"), None, 100)).await.expect("l")),
        ["app/b", "apps/x"]
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(None, None, None, 2)).await.expect("l")),
        ["app/a", "app/b"]
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(None, None, Some("app/b"), 2)).await.expect("l")),
        ["app/c", "apps/x"]
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(Some("%"), None, None, 100)).await.expect("l")),
        Vec::<String>::new()
    );
    assert_eq!(
        names(store.list_secrets(DEFAULT_TENANT, q(Some("APP"), None, None, 100)).await.expect("l")),
        Vec::<String>::new(),
        "case-sensitive"
    );
}

pub async fn tenants_are_isolated(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("shared/name");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 1), "mine").await.expect("write");
    assert!(matches!(
        store.read_secret("tnt_other", "shared/name", None).await,
        Err(StoreError::SecretNotFound)
    ));
    let listed = store
        .list_secrets("tnt_other", SecretListQuery { limit: 100, ..Default::default() })
        .await
        .expect("list");
    assert!(listed.is_empty());
    assert!(matches!(
        store.soft_delete("tnt_other", "shared/name", at(2), &[]).await,
        Err(StoreError::SecretNotFound)
    ));
    assert!(store.list_tokens("tnt_other", None, 100).await.expect("tokens").is_empty());
}

pub async fn bootstrap_happens_once(store: Dyn) {
    assert!(store.bootstrap(DEFAULT_TENANT, token("tok_a", b"a", true)).await.expect("first"));
    assert!(!store.bootstrap(DEFAULT_TENANT, token("tok_b", b"b", true)).await.expect("second"));
    assert!(store.find_token(&hash_token(b"b")).await.expect("find").is_none());
    let roots = store.list_tokens(DEFAULT_TENANT, None, 100).await.expect("list");
    assert_eq!(roots.iter().filter(|t| t.is_root).count(), 1);
}

pub async fn tokens_find_list_revoke(store: Dyn) {
    setup(&store).await;
    let mut t = token("tok_2", b"skt_two", false);
    t.expires_at = Some(at(100));
    t.scopes = vec!["secrets:read".into(), "secrets:list".into()];
    store.create_token(t.clone()).await.expect("create");
    assert!(matches!(store.create_token(t).await, Err(StoreError::AlreadyExists)));
    let found = store.find_token(&hash_token(b"skt_two")).await.expect("find").expect("exists");
    assert_eq!(found.id, "tok_2");
    assert_eq!(found.scopes, vec!["secrets:read".to_string(), "secrets:list".to_string()]);
    assert_eq!(found.groups, vec!["ops".to_string()]);
    assert_eq!(found.expires_at, Some(at(100)));
    assert!(!found.is_root && found.revoked_at.is_none());
    let page = store.list_tokens(DEFAULT_TENANT, None, 1).await.expect("list");
    assert_eq!(page.len(), 1);
    let rest = store.list_tokens(DEFAULT_TENANT, Some(&page[0].id), 10).await.expect("list");
    assert_eq!(rest.len(), 1);
    assert_eq!(
        store.get_token(DEFAULT_TENANT, "tok_2").await.expect("get").map(|t| t.id),
        Some("tok_2".into())
    );
    assert_eq!(store.get_token("tnt_other", "tok_2").await.expect("get"), None);
    store.revoke_token(DEFAULT_TENANT, "tok_2", at(5)).await.expect("revoke");
    store.revoke_token(DEFAULT_TENANT, "tok_2", at(9)).await.expect("revoke again is fine");
    let found = store.find_token(&hash_token(b"skt_two")).await.expect("find").expect("exists");
    assert_eq!(found.revoked_at, Some(at(5)));
    assert!(matches!(store.revoke_token(DEFAULT_TENANT, "tok_none", at(5)).await, Err(StoreError::NotFound)));
    assert!(matches!(store.revoke_token("tnt_other", "tok_root", at(5)).await, Err(StoreError::NotFound)));
}

/// Revoking a token revokes what it issued, and what those issued, in any tenant; nothing else.
pub async fn revoking_a_token_revokes_its_tree(store: Dyn) {
    setup(&store).await;
    let child =
        |id: &str, parent: &str| NewToken { parent: Some(parent.into()), ..token(id, id.as_bytes(), false) };
    let other = TenantRecord { id: "tnt_b".into(), name: "b".into(), partner_id: None, created_at: at(0) };
    store.create_tenant(&other).await.expect("tenant");
    for t in [
        token("tok_p", b"tok_p", false),
        child("tok_c1", "tok_p"),
        child("tok_c2", "tok_p"),
        child("tok_g", "tok_c1"),
        NewToken { tenant: "tnt_b".into(), ..child("tok_far", "tok_g") },
        token("tok_other", b"tok_other", false),
        child("tok_other_child", "tok_other"),
    ] {
        store.create_token(t).await.expect("create");
    }
    // A branch revoked earlier keeps its time.
    assert_eq!(store.revoke_token(DEFAULT_TENANT, "tok_c2", at(3)).await.expect("revoke"), 1);
    assert_eq!(store.revoke_token(DEFAULT_TENANT, "tok_p", at(5)).await.expect("revoke"), 4);
    let revoked_at = |id: &'static str, tenant: &'static str| {
        let store = store.clone();
        async move { store.get_token(tenant, id).await.expect("get").expect("exists").revoked_at }
    };
    for id in ["tok_p", "tok_c1", "tok_g"] {
        assert_eq!(revoked_at(id, DEFAULT_TENANT).await, Some(at(5)), "{id}");
    }
    assert_eq!(revoked_at("tok_far", "tnt_b").await, Some(at(5)));
    assert_eq!(revoked_at("tok_c2", DEFAULT_TENANT).await, Some(at(3)));
    assert_eq!(revoked_at("tok_other", DEFAULT_TENANT).await, None);
    assert_eq!(revoked_at("tok_other_child", DEFAULT_TENANT).await, None);
    assert_eq!(revoked_at("tok_root", DEFAULT_TENANT).await, None);
    // Nothing more to revoke the second time.
    assert_eq!(store.revoke_token(DEFAULT_TENANT, "tok_p", at(9)).await.expect("again"), 0);
    // A revoked or unknown token issues nothing.
    for parent in ["tok_c1", "tok_missing"] {
        let r = store.create_token(child("tok_late", parent)).await;
        assert!(matches!(r, Err(StoreError::NotFound)), "{parent}: {r:?}");
    }
    assert!(store.get_token(DEFAULT_TENANT, "tok_late").await.expect("get").is_none());
}

pub async fn master_keys_and_wraps(store: Dyn) {
    setup(&store).await;
    let keys = store.master_keys().await.expect("keys");
    assert_eq!(keys.iter().map(|k| k.version).collect::<Vec<_>>(), vec![1]);
    assert!(matches!(store.insert_master_key(&keys[0], at(1)).await, Err(StoreError::AlreadyExists)));
    let mut twin = KeyRing::new(RootKey::from_bytes(&[42u8; 32]).expect("key"));
    twin.load_master_key(&keys[0]).expect("stored key unwraps with the root key");
    assert_eq!(store.reserve_wraps(1, 1000).await.expect("reserve"), 1000);
    assert_eq!(store.reserve_wraps(1, 24).await.expect("reserve"), 1024);
    assert!(matches!(store.reserve_wraps(7, 1).await, Err(StoreError::NotFound)));
    let status = store.key_status().await.expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].version, status[0].wraps, status[0].data_keys), (1, 1024, 0));
}

pub async fn rewrap_flow(store: Dyn) {
    let mut ring = setup(&store).await;
    for i in 0..5 {
        let p = path(&format!("rw/{i}"));
        put(&store, &ring, write(DEFAULT_TENANT, &p, i), &format!("v{i}")).await.expect("write");
    }
    let new = ring.create_master_key(2).expect("key 2");
    ring.add_wrap_budget(2, 100);
    store.insert_master_key(&new, at(10)).await.expect("insert");
    let pending = store.pending_rewraps(2, 3).await.expect("pending");
    assert_eq!(pending.len(), 3);
    for item in &pending {
        let ctx = SealContext { tenant: &item.tenant, path: &item.path, version: item.version };
        let re = ring.rewrap(&ctx, &item.sealed).expect("rewrap");
        assert!(store.replace_wrap(item, &re).await.expect("replace"));
        assert!(!store.replace_wrap(item, &re).await.expect("stale replace"), "only once");
    }
    assert_eq!(store.pending_rewraps(2, 100).await.expect("pending").len(), 2);
    let status = store.key_status().await.expect("status");
    assert_eq!(status.iter().map(|s| s.data_keys).collect::<Vec<_>>(), vec![2, 3]);
    for i in 0..5 {
        assert_eq!(get(&store, &ring, &format!("rw/{i}"), None).await.expect("read"), format!("v{i}"));
    }
}

pub async fn moved_ciphertext_never_opens(store: Dyn) {
    let ring = setup(&store).await;
    let (a, b) = (path("move/a"), path("move/b"));
    put(&store, &ring, write(DEFAULT_TENANT, &a, 1), "secret-a").await.expect("write");
    put(&store, &ring, write(DEFAULT_TENANT, &b, 2), "secret-b").await.expect("write");
    let sa = store
        .read_secret(DEFAULT_TENANT, "move/a", None)
        .await
        .expect("read")
        .version
        .sealed
        .expect("sealed");
    let ctx_b = SealContext { tenant: DEFAULT_TENANT, path: "move/b", version: 1 };
    assert!(ring.open(&ctx_b, &sa).is_err());
}

/// Raw edits of stored rows, as an attacker with database access (or a bad disk) would make them.
/// Each backend implements it with its own SQL, for the tampering case only.
#[async_trait::async_trait]
pub trait Tamper: Send + Sync {
    /// Flips the lowest bit of byte `index` of one version's data ciphertext.
    async fn flip_ciphertext_bit(&self, tenant: &str, path: &str, version: u64, index: usize);
    /// Flips the lowest bit of byte `index` of one version's wrapped data key.
    async fn flip_wrapped_key_bit(&self, tenant: &str, path: &str, version: u64, index: usize);
    /// Copies the sealed columns (key version, wrapped key, ciphertext) of one version row onto another.
    async fn copy_sealed(&self, tenant: &str, from: (&str, u64), to: (&str, u64));
}

async fn opens(store: &Dyn, ring: &KeyRing, p: &str, version: u64) -> Result<String, StoreError> {
    get(store, ring, p, Some(version)).await
}

/// Any flipped bit, or a ciphertext moved to another path or version, fails to open: never wrong data.
pub async fn tampering_is_detected(store: Dyn, tamper: &dyn Tamper) {
    let ring = setup(&store).await;
    let (a, b) = (path("t/a"), path("t/b"));
    for i in 1..=2 {
        put(&store, &ring, write(DEFAULT_TENANT, &a, i), &format!("value-a{i}")).await.expect("write");
        put(&store, &ring, write(DEFAULT_TENANT, &b, i), &format!("value-b{i}")).await.expect("write");
    }
    let len = store
        .read_secret(DEFAULT_TENANT, "t/a", Some(1))
        .await
        .expect("read")
        .version
        .sealed
        .expect("s")
        .ciphertext()
        .len();
    for index in [0, 5, 12, len / 2, len - 1] {
        tamper.flip_ciphertext_bit(DEFAULT_TENANT, "t/a", 1, index).await;
        assert!(
            opens(&store, &ring, "t/a", 1).await.is_err(),
            "flipped ciphertext byte {index} still opened"
        );
        tamper.flip_ciphertext_bit(DEFAULT_TENANT, "t/a", 1, index).await;
        assert_eq!(opens(&store, &ring, "t/a", 1).await.expect("restored"), "value-a1");
    }
    for index in [0, 20, 40] {
        tamper.flip_wrapped_key_bit(DEFAULT_TENANT, "t/a", 2, index).await;
        assert!(
            opens(&store, &ring, "t/a", 2).await.is_err(),
            "flipped wrapped key byte {index} still opened"
        );
        tamper.flip_wrapped_key_bit(DEFAULT_TENANT, "t/a", 2, index).await;
    }
    // Moved to another path, and to another version of the same path.
    tamper.copy_sealed(DEFAULT_TENANT, ("t/a", 1), ("t/b", 1)).await;
    assert!(opens(&store, &ring, "t/b", 1).await.is_err(), "ciphertext moved to another path opened");
    tamper.copy_sealed(DEFAULT_TENANT, ("t/a", 1), ("t/a", 2)).await;
    assert!(opens(&store, &ring, "t/a", 2).await.is_err(), "ciphertext moved to another version opened");
    assert_eq!(opens(&store, &ring, "t/a", 1).await.expect("untouched"), "value-a1");
    assert_eq!(opens(&store, &ring, "t/b", 2).await.expect("untouched"), "value-b2");
}

fn policy(id: &str, name: &str) -> PolicyRecord {
    PolicyRecord {
        tenant: DEFAULT_TENANT.into(),
        id: id.into(),
        name: name.into(),
        description: String::new(),
        rules: r#"[{"path_pattern":"a/**","permissions":["read"],"effect":"allow"}]"#.into(),
        created_at: at(1),
        updated_at: at(1),
    }
}

fn binding(id: &str, policy_id: &str, identity_type: &str, identity_id: &str) -> BindingRecord {
    BindingRecord {
        tenant: DEFAULT_TENANT.into(),
        id: id.into(),
        policy_id: policy_id.into(),
        identity_type: identity_type.into(),
        identity_id: identity_id.into(),
        created_at: at(2),
    }
}

pub async fn policies_and_bindings(store: Dyn) {
    setup(&store).await;
    store.create_policy(&policy("pol_b", "beta")).await.expect("create");
    store.create_policy(&policy("pol_a", "alpha")).await.expect("create");
    assert!(matches!(store.create_policy(&policy("pol_c", "alpha")).await, Err(StoreError::AlreadyExists)));
    // Names are compared byte for byte.
    store.create_policy(&policy("pol_d", "Alpha")).await.expect("case differs");
    assert_eq!(store.get_policy(DEFAULT_TENANT, "pol_a").await.expect("get").name, "alpha");
    assert!(matches!(store.get_policy("tnt_other", "pol_a").await, Err(StoreError::NotFound)));
    let names = |v: Vec<PolicyRecord>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_policies(DEFAULT_TENANT, None, 10).await.expect("list")),
        ["Alpha", "alpha", "beta"]
    );
    assert_eq!(names(store.list_policies(DEFAULT_TENANT, Some("Alpha"), 1).await.expect("list")), ["alpha"]);
    let mut changed = policy("pol_b", "gamma");
    changed.description = "d".into();
    changed.updated_at = at(5);
    store.update_policy(&changed).await.expect("update");
    assert_eq!(store.get_policy(DEFAULT_TENANT, "pol_b").await.expect("get"), changed);
    assert!(matches!(store.update_policy(&policy("pol_b", "alpha")).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(store.update_policy(&policy("pol_zz", "zz")).await, Err(StoreError::NotFound)));

    store.create_binding(&binding("bnd_1", "pol_a", "service_account", "sa:x")).await.expect("bind");
    store.create_binding(&binding("bnd_2", "pol_a", "group", "ops")).await.expect("bind");
    assert!(matches!(
        store.create_binding(&binding("bnd_3", "pol_a", "group", "ops")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store.create_binding(&binding("bnd_4", "pol_none", "group", "ops")).await,
        Err(StoreError::NotFound)
    ));
    let bound = store.list_bindings(DEFAULT_TENANT, "pol_a", None, 100).await.expect("bindings");
    assert_eq!(bound.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), ["bnd_1", "bnd_2"]);
    let page = store.list_bindings(DEFAULT_TENANT, "pol_a", None, 1).await.expect("first page");
    assert_eq!(page.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), ["bnd_1"]);
    let page = store.list_bindings(DEFAULT_TENANT, "pol_a", Some("bnd_1"), 1).await.expect("next page");
    assert_eq!(page.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), ["bnd_2"]);
    assert!(store.list_bindings(DEFAULT_TENANT, "pol_a", Some("bnd_2"), 1).await.expect("end").is_empty());
    assert_eq!(store.get_binding(DEFAULT_TENANT, "pol_a", "bnd_2").await.expect("get").id, "bnd_2");
    assert!(matches!(store.get_binding(DEFAULT_TENANT, "pol_a", "bnd_9").await, Err(StoreError::NotFound)));
    assert!(matches!(store.get_binding("tnt_other", "pol_a", "bnd_2").await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.list_bindings(DEFAULT_TENANT, "pol_none", None, 100).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(store.list_bindings("tnt_other", "pol_a", None, 100).await, Err(StoreError::NotFound)));
    store.delete_binding(DEFAULT_TENANT, "pol_a", "bnd_1").await.expect("unbind");
    assert!(matches!(
        store.delete_binding(DEFAULT_TENANT, "pol_a", "bnd_1").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_binding(DEFAULT_TENANT, "pol_b", "bnd_2").await,
        Err(StoreError::NotFound)
    ));
    store.delete_policy(DEFAULT_TENANT, "pol_a").await.expect("delete");
    assert!(matches!(store.delete_policy(DEFAULT_TENANT, "pol_a").await, Err(StoreError::NotFound)));
    let snapshot = store.policy_snapshot(DEFAULT_TENANT).await.expect("snapshot");
    assert!(snapshot.bindings.is_empty(), "bindings go with their policy");
    assert_eq!(names(snapshot.policies), ["Alpha", "gamma"]);
}

pub async fn policy_epoch_tracks_every_change(store: Dyn) {
    setup(&store).await;
    let mut last = store.policy_epoch(DEFAULT_TENANT).await.expect("epoch");
    let token_epoch = |store: Dyn| async move {
        store.find_token(&hash_token(b"root")).await.expect("find").expect("root").policy_epoch
    };
    assert_eq!(token_epoch(store.clone()).await, last);
    let mut epochs = vec![last];
    store.create_policy(&policy("pol_a", "a")).await.expect("create");
    epochs.push(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"));
    store.update_policy(&policy("pol_a", "a2")).await.expect("update");
    epochs.push(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"));
    store.create_binding(&binding("bnd_1", "pol_a", "user", "u")).await.expect("bind");
    epochs.push(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"));
    assert_eq!(token_epoch(store.clone()).await, epochs[3], "token lookups carry the current epoch");
    store.delete_binding(DEFAULT_TENANT, "pol_a", "bnd_1").await.expect("unbind");
    epochs.push(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"));
    store.delete_policy(DEFAULT_TENANT, "pol_a").await.expect("delete");
    epochs.push(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"));
    assert!(epochs.windows(2).all(|w| w[1] > w[0]), "every change moves the epoch: {epochs:?}");
    last = epochs[5];
    let snapshot = store.policy_snapshot(DEFAULT_TENANT).await.expect("snapshot");
    assert_eq!(snapshot.epoch, last);
    // A failed change leaves the epoch alone.
    assert!(store.delete_policy(DEFAULT_TENANT, "pol_a").await.is_err());
    assert_eq!(store.policy_epoch(DEFAULT_TENANT).await.expect("epoch"), last);
}

pub async fn partners_and_tenants(store: Dyn) {
    let ring = setup(&store).await;
    let partner =
        |id: &str, name: &str| PartnerRecord { id: id.into(), name: name.into(), created_at: at(1) };
    let tenant = |id: &str, partner: Option<&str>| TenantRecord {
        id: id.into(),
        name: format!("name of {id}"),
        partner_id: partner.map(str::to_owned),
        created_at: at(2),
    };
    store.create_partner(&partner("prt_b", "beta")).await.expect("partner");
    store.create_partner(&partner("prt_a", "acme")).await.expect("partner");
    assert!(matches!(store.create_partner(&partner("prt_c", "acme")).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(store.create_partner(&partner("prt_a", "other")).await, Err(StoreError::AlreadyExists)));
    let ids = |v: Vec<PartnerRecord>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_partners(None, 10).await.expect("list")), ["prt_a", "prt_b"]);
    assert_eq!(ids(store.list_partners(Some("prt_a"), 10).await.expect("list")), ["prt_b"]);

    store.create_tenant(&tenant("tnt_acme_dev", Some("prt_a"))).await.expect("tenant");
    store.create_tenant(&tenant("tnt_acme_prod", Some("prt_a"))).await.expect("tenant");
    store.create_tenant(&tenant("tnt_solo", None)).await.expect("tenant");
    assert!(matches!(store.create_tenant(&tenant("tnt_solo", None)).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(
        store.create_tenant(&tenant("tnt_x", Some("prt_none"))).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_tenant("tnt_acme_dev").await.expect("get"),
        Some(tenant("tnt_acme_dev", Some("prt_a")))
    );
    assert_eq!(store.get_tenant("tnt_none").await.expect("get"), None);
    let tids = |v: Vec<TenantRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        tids(store.list_tenants(Some("prt_a"), None, 10).await.expect("list")),
        ["tnt_acme_dev", "tnt_acme_prod"]
    );
    assert_eq!(
        tids(store.list_tenants(None, Some("tnt_acme_prod"), 10).await.expect("list")),
        ["tnt_default", "tnt_solo"]
    );

    // A token of a partner's tenant carries the partner and its roles.
    let mut t = token("tok_pa", b"skt_partner_admin", false);
    t.tenant = "tnt_acme_dev".into();
    t.roles = vec!["partner_admin".into()];
    store.create_token(t).await.expect("token");
    let found = store.find_token(&hash_token(b"skt_partner_admin")).await.expect("find").expect("exists");
    assert_eq!((found.tenant.as_str(), found.partner_id.as_deref()), ("tnt_acme_dev", Some("prt_a")));
    assert_eq!(found.roles, vec!["partner_admin".to_string()]);
    let root = store.find_token(&hash_token(b"root")).await.expect("find").expect("root");
    assert_eq!((root.partner_id, root.roles), (None, Vec::<String>::new()));
    // A partner's own namespace holds secrets but is never a tenant.
    assert_eq!(store.get_tenant("prt_a").await.expect("get"), None);
    let p = path("shared/ca");
    put(&store, &ring, write("prt_a", &p, 3), "partner-value").await.expect("partner secret");
    assert!(matches!(
        store.read_secret(DEFAULT_TENANT, "shared/ca", None).await,
        Err(StoreError::SecretNotFound)
    ));
    assert_eq!(store.read_secret("prt_a", "shared/ca", None).await.expect("read").version.version, 1);
}

fn audit_entry(tenant: &str, n: u64, action: &str, path: Option<&str>) -> crate::NewAuditEntry {
    crate::NewAuditEntry {
        tenant: tenant.into(),
        id: format!("aud_{tenant}_{n}"),
        timestamp: at(n as i64),
        identity_id: if n.is_multiple_of(2) { "even".into() } else { "odd".into() },
        action: action.into(),
        secret_path: path.map(str::to_owned),
        outcome: if n.is_multiple_of(3) { "denied".into() } else { "success".into() },
        body: format!(r#"{{"n":{n},"tenant":"{tenant}"}}"#),
    }
}

/// The key the suite signs audit chain heads with (and [`check_chain`] checks them against).
pub fn audit_test_key() -> scaivault_crypto::AuditKey {
    scaivault_crypto::AuditKey::derive(&RootKey::from_bytes(&[42u8; 32]).expect("key"))
}

async fn append(store: &Dyn, entries: &[crate::NewAuditEntry]) {
    let key = audit_test_key();
    let sign = move |t: &str, seq: u64, h: &[u8; 32]| key.sign_head(t, seq, h);
    store.append_audit(entries, &scaivault_crypto::chain_hash, &sign).await.expect("append");
}

/// Walks a tenant's chain from the start and checks every link, that the sequence numbers run from
/// 1 without a gap, and that the head is the chain's end, signed with [`audit_test_key`]. Returns the
/// last sequence number.
pub async fn check_chain(store: &Dyn, tenant: &str) -> u64 {
    let key = audit_test_key();
    let mut prev = scaivault_crypto::GENESIS_HASH;
    let mut last = 0;
    loop {
        let page = store
            .audit_page(tenant, &crate::AuditFilter::default(), crate::AuditOrder::OldestFirst, Some(last), 7)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        for row in page {
            assert_eq!(row.seq, last + 1, "{tenant}: gap or duplicate");
            assert_eq!(row.prev_hash, prev.to_vec());
            let hash = scaivault_crypto::chain_hash(tenant, row.seq, &prev, row.body.as_bytes());
            assert_eq!(row.hash, hash.to_vec(), "{tenant}: link {}", row.seq);
            prev = hash;
            last = row.seq;
        }
    }
    let head = store.audit_head(tenant).await.expect("head");
    match head {
        Some(h) => {
            assert_eq!((h.seq, h.hash.clone()), (last, prev.to_vec()));
            assert!(key.verify_head(tenant, h.seq, &prev, &h.mac));
        }
        None => assert_eq!(last, 0),
    }
    last
}

pub async fn audit_chains(store: Dyn) {
    setup(&store).await;
    assert_eq!(store.audit_head(DEFAULT_TENANT).await.expect("head"), None);
    let batch: Vec<_> = (1..=6)
        .map(|n| {
            audit_entry(if n % 2 == 0 { DEFAULT_TENANT } else { "tnt_b" }, n, "secret.read", Some("a/b"))
        })
        .collect();
    append(&store, &batch).await;
    append(
        &store,
        &[
            audit_entry(DEFAULT_TENANT, 7, "secret.write", Some("a/c")),
            audit_entry(DEFAULT_TENANT, 8, "policy.create", None),
        ],
    )
    .await;
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, 5);
    assert_eq!(check_chain(&store, "tnt_b").await, 3);
    let page = |filter: crate::AuditFilter<'static>, order, after, limit| {
        let store = store.clone();
        async move {
            store
                .audit_page(DEFAULT_TENANT, &filter, order, after, limit)
                .await
                .expect("page")
                .into_iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    use crate::{AuditFilter, AuditOrder::*};
    assert_eq!(page(AuditFilter::default(), NewestFirst, None, 2).await, vec![5, 4]);
    assert_eq!(page(AuditFilter::default(), NewestFirst, Some(4), 10).await, vec![3, 2, 1]);
    assert_eq!(
        page(AuditFilter { secret_path: Some("a/b"), ..Default::default() }, OldestFirst, None, 10).await,
        vec![1, 2, 3]
    );
    assert_eq!(
        page(AuditFilter { action: Some("secret.write"), ..Default::default() }, OldestFirst, None, 10).await,
        vec![4]
    );
    assert_eq!(
        page(AuditFilter { outcome: Some("denied"), ..Default::default() }, OldestFirst, None, 10).await,
        vec![3]
    );
    assert_eq!(
        page(AuditFilter { identity_id: Some("odd"), ..Default::default() }, OldestFirst, None, 10).await,
        vec![4]
    );
    assert_eq!(
        page(
            AuditFilter { start: Some(at(4)), end: Some(at(7)), ..Default::default() },
            OldestFirst,
            None,
            10
        )
        .await,
        vec![2, 3, 4]
    );
}

pub async fn concurrent_audit_appends_keep_one_chain(store: Dyn) {
    setup(&store).await;
    let tasks: Vec<_> = (0..16u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10u64 {
                    append(
                        &store,
                        &[
                            audit_entry(DEFAULT_TENANT, w * 100 + i, "secret.read", None),
                            audit_entry("tnt_b", w * 100 + i, "secret.read", None),
                        ],
                    )
                    .await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, 160);
    assert_eq!(check_chain(&store, "tnt_b").await, 160);
}

/// Concurrent audited writes, a third of them refused by check-and-set: the refused ones leave
/// nothing (no version, no record), and the others all commit, gapless, each with its record.
pub async fn concurrent_writes_fail_alone(store: Dyn) {
    let ring = Arc::new(setup(&store).await);
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let store = store.clone();
        let ring = ring.clone();
        tasks.push(tokio::spawn(async move {
            let entry = |version: u64| {
                let mut e = audit_entry(DEFAULT_TENANT, version, "secret.write", Some("grp/x"));
                e.id = format!("aud_w{i}");
                e.body = format!(r#"{{"writer":{i},"version":{version}}}"#);
                e
            };
            let p = path("grp/x");
            let mut w = write(DEFAULT_TENANT, &p, i as i64);
            if i % 3 == 0 {
                w.cas = Some(1_000);
            }
            (i, put_audited(&store, &ring, w, &format!("w{i}"), &entry).await.map(|o| o.version))
        }));
    }
    let mut written = BTreeMap::new();
    for t in tasks {
        match t.await.expect("join") {
            (i, Ok(version)) => assert!(written.insert(version, i).is_none(), "version {version} twice"),
            (i, Err(StoreError::CasMismatch { .. })) => assert_eq!(i % 3, 0, "writer {i} refused"),
            (i, Err(e)) => panic!("writer {i}: {e}"),
        }
    }
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), (1..=20).collect::<Vec<u64>>());
    for (version, writer) in written.iter().rev().take(10) {
        assert_eq!(get(&store, &ring, "grp/x", Some(*version)).await.expect("read"), format!("w{writer}"));
    }
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, 20);
    let rows = store
        .audit_page(DEFAULT_TENANT, &crate::AuditFilter::default(), crate::AuditOrder::OldestFirst, None, 50)
        .await
        .expect("page");
    for (row, (version, writer)) in rows.iter().zip(&written) {
        assert_eq!(row.body, format!(r#"{{"writer":{writer},"version":{version}}}"#));
    }
}

/// Rounds of concurrent audited writes of one secret, one write per round with a NUL byte in its
/// record (text PostgreSQL refuses; SQLite keeps it): however the backend groups them, every other
/// write commits with its record, and the chain holds exactly the writes that answered success. (A
/// PostgreSQL write sent without a savepoint that failed would take its whole group with it.)
pub async fn a_write_refused_for_its_text_fails_alone(store: Dyn) {
    let ring = Arc::new(setup(&store).await);
    let mut kept = 0;
    for round in 0..4u64 {
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let store = store.clone();
            let ring = ring.clone();
            tasks.push(tokio::spawn(async move {
                let entry = |version: u64| {
                    let mut e = audit_entry(DEFAULT_TENANT, version, "secret.write", Some("nul/x"));
                    e.id = format!("aud_r{round}w{i}");
                    e.body = if i == 5 {
                        format!("{{\"writer\":\"r{round}w{i}\u{0}\"}}")
                    } else {
                        format!(r#"{{"writer":"r{round}w{i}"}}"#)
                    };
                    e
                };
                let p = path("nul/x");
                let w = write(DEFAULT_TENANT, &p, (round * 8 + i) as i64);
                (i, put_audited(&store, &ring, w, &format!("r{round}w{i}"), &entry).await)
            }));
        }
        for t in tasks {
            match t.await.expect("join") {
                (_, Ok(_)) => kept += 1,
                (5, Err(_)) => {}
                (i, Err(e)) => panic!("round {round}: writer {i} failed with the one refused: {e}"),
            }
        }
    }
    assert!(kept >= 28, "{kept} writes kept");
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, kept);
}

/// Two stores on one database (two replicas): audited writes of one secret from both, and audit
/// batches of reads from both, all at once, still give one gapless run of versions, each opening to
/// the value its writer wrote, and one valid chain holding every record. Not part of
/// [`conformance_suite!`]: it needs a backend that several processes share.
pub async fn replicas_share_one_history(a: Dyn, b: Dyn) {
    let ring = Arc::new(setup(&a).await);
    let mut written = BTreeMap::new();
    // In rounds, so each store writes again after the other has appended.
    for round in 0..3u64 {
        let mut tasks = Vec::new();
        for (r, store) in [a.clone(), b.clone()].into_iter().enumerate() {
            for i in 0..5u64 {
                let store = store.clone();
                let ring = ring.clone();
                tasks.push(tokio::spawn(async move {
                    let value = format!("s{r}r{round}w{i}");
                    let entry = |version: u64| {
                        let mut e = audit_entry(DEFAULT_TENANT, version, "secret.write", Some("rep/x"));
                        e.id = format!("aud_{value}");
                        e
                    };
                    let p = path("rep/x");
                    let w = write(DEFAULT_TENANT, &p, i as i64);
                    let version = put_audited(&store, &ring, w, &value, &entry).await.expect("write").version;
                    (version, value)
                }));
            }
        }
        let mut reads = Vec::new();
        for (r, store) in [a.clone(), b.clone()].into_iter().enumerate() {
            for i in 0..3u64 {
                let store = store.clone();
                reads.push(tokio::spawn(async move {
                    let entries: Vec<_> = (0..2u64)
                        .map(|j| {
                            let mut e = audit_entry(DEFAULT_TENANT, 100 + i, "secret.read", Some("rep/x"));
                            e.id = format!("aud_read_{round}_{r}_{i}_{j}");
                            e
                        })
                        .collect();
                    append(&store, &entries).await;
                }));
            }
        }
        for t in tasks {
            let (version, value) = t.await.expect("join");
            assert!(written.insert(version, value).is_none(), "version {version} twice");
        }
        for t in reads {
            t.await.expect("join");
        }
    }
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), (1..=30).collect::<Vec<u64>>());
    for (version, value) in written.iter().rev().take(10) {
        assert_eq!(&get(&b, &ring, "rep/x", Some(*version)).await.expect("read"), value);
    }
    assert_eq!(check_chain(&a, DEFAULT_TENANT).await, 30 + 36);
    // Two secrets of one tenant, written in opposite orders by the two stores at once: every write
    // succeeds, each secret's versions stay gapless and the chain holds every record. (A group that
    // holds a secret and the chain head gives up at once on a row another store holds and is written
    // again in a group of its own; this run does not reliably produce the lock cycle that prevents.)
    let mut tasks = Vec::new();
    for (r, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for i in 0..12u64 {
            let store = store.clone();
            let ring = ring.clone();
            tasks.push(tokio::spawn(async move {
                let order = if r == 0 {
                    ["rep/p", "rep/q", "rep/p", "rep/q"]
                } else {
                    ["rep/q", "rep/p", "rep/q", "rep/p"]
                };
                let mut versions = Vec::new();
                for (n, p) in order.into_iter().enumerate() {
                    let entry = |version: u64| {
                        let mut e = audit_entry(DEFAULT_TENANT, version, "secret.write", Some(p));
                        e.id = format!("aud_x{r}_{i}_{n}");
                        e
                    };
                    let sp = path(p);
                    let w = write(DEFAULT_TENANT, &sp, i as i64);
                    versions
                        .push((p, put_audited(&store, &ring, w, "v", &entry).await.expect("write").version));
                }
                versions
            }));
        }
    }
    let mut by_path: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for t in tasks {
        for (p, v) in t.await.expect("join") {
            by_path.entry(p).or_default().push(v);
        }
    }
    for versions in by_path.values_mut() {
        versions.sort_unstable();
        assert_eq!(*versions, (1..=48).collect::<Vec<u64>>());
    }
    assert_eq!(check_chain(&b, DEFAULT_TENANT).await, 30 + 36 + 96);
}

/// Holds rows locked from a connection of its own, as another replica's transaction would.
#[async_trait::async_trait]
pub trait RowLock: Send + Sync {
    /// Locks the row of secret `path` of the default tenant, until [`RowLock::release`].
    async fn hold(&self, path: &str);
    /// Ends the transaction that holds it.
    async fn release(&self);
}

/// A secret whose row another transaction holds delays only its own write: the store's other
/// writes go on meanwhile, and the delayed write lands once the row is free. For backends that
/// several processes share.
pub async fn a_locked_row_delays_only_its_own_write(store: Dyn, lock: &dyn RowLock) {
    let ring = Arc::new(setup(&store).await);
    let (q, p) = (path("lock/q"), path("lock/p"));
    put(&store, &ring, write(DEFAULT_TENANT, &q, 1), "q1").await.expect("write q");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 1), "p1").await.expect("write p");
    lock.hold("lock/q").await;
    let waiting = {
        let (store, ring) = (store.clone(), ring.clone());
        tokio::spawn(async move {
            let q = path("lock/q");
            put(&store, &ring, write(DEFAULT_TENANT, &q, 2), "q2").await.map(|o| o.version)
        })
    };
    // Let the write of q reach the locked row.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 2..5 {
        let wrote = tokio::time::timeout(
            Duration::from_secs(20),
            put(&store, &ring, write(DEFAULT_TENANT, &p, n), "p"),
        )
        .await
        .expect("a write of another secret is not held up by the locked row")
        .expect("write p");
        assert_eq!(wrote.version, n as u64);
    }
    assert!(!waiting.is_finished(), "the write of the locked secret waits for its row");
    lock.release().await;
    assert_eq!(waiting.await.expect("join").expect("write q once its row is free"), 2);
    assert_eq!(get(&store, &ring, "lock/q", None).await.expect("read"), "q2");
}

/// Makes every change of one secret's row fail as a cancelled statement does (on PostgreSQL,
/// `query_canceled`, which the store also sees when a lock timeout fires just as it is granted).
#[async_trait::async_trait]
pub trait CancelWrites: Send + Sync {
    /// From now on, every change of the default tenant's secret `path` is cancelled.
    async fn cancel_every_write(&self, path: &str);
}

/// A write cancelled on every try gives up after its tries (the last one waits without a lock
/// timeout, so a cancel there is real) instead of trying forever, and the store goes on writing
/// other secrets. For backends that retry a write whose row was locked elsewhere.
pub async fn a_write_cancelled_every_time_gives_up(store: Dyn, cancel: &dyn CancelWrites) {
    let ring = setup(&store).await;
    let (q, p) = (path("cancel/q"), path("cancel/p"));
    put(&store, &ring, write(DEFAULT_TENANT, &q, 1), "q1").await.expect("write q");
    cancel.cancel_every_write("cancel/q").await;
    let tried =
        tokio::time::timeout(Duration::from_secs(30), put(&store, &ring, write(DEFAULT_TENANT, &q, 2), "q2"))
            .await
            .expect("the cancelled write kept trying");
    assert!(tried.is_err(), "a write cancelled on every try answered {tried:?}");
    assert_eq!(get(&store, &ring, "cancel/q", None).await.expect("read"), "q1");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 3), "p1").await.expect("write p");
    assert_eq!(get(&store, &ring, "cancel/p", None).await.expect("read"), "p1");
}

/// Audited writes whose callers give up at any moment (the future dropped) leave either their
/// whole change or none of it, and the store goes on writing: versions stay gapless, the head points
/// at the newest, every kept version opens to a value some writer wrote, and every version has its
/// one audit record.
pub async fn cut_off_writes_leave_all_or_nothing(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("cut/x");
    let entry = |version: u64| audit_entry(DEFAULT_TENANT, version, "secret.write", Some("cut/x"));
    let audited_put = |now: u64, value: &'static str| {
        put_audited(&store, &ring, write(DEFAULT_TENANT, &p, now as i64), value, &entry)
    };
    for round in 0..150u64 {
        let _ =
            tokio::time::timeout(Duration::from_micros(round % 30 * 8), audited_put(round, "cut-off")).await;
        let kept = audited_put(round, "kept").await.expect("a write after a cut-off one");
        assert_eq!(get(&store, &ring, "cut/x", Some(kept.version)).await.expect("read"), "kept");
    }
    let (head, versions) = store.list_versions(DEFAULT_TENANT, "cut/x").await.expect("versions");
    let mut numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    numbers.sort_unstable();
    let oldest = head.current_version + 1 - numbers.len() as u64;
    assert_eq!(numbers, (oldest..=head.current_version).collect::<Vec<u64>>());
    assert!(head.current_version >= 150);
    for v in numbers {
        let value = get(&store, &ring, "cut/x", Some(v)).await.expect("every kept version opens");
        assert!(value == "kept" || value == "cut-off", "{value}");
    }
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, head.current_version, "one record per version");
}

pub async fn a_write_and_its_audit_record_commit_together(store: Dyn) {
    let ring = setup(&store).await;
    let key = audit_test_key();
    let sign = move |t: &str, seq: u64, h: &[u8; 32]| key.sign_head(t, seq, h);
    let build = |version: u64, created: bool| {
        let mut e = audit_entry(DEFAULT_TENANT, version, "secret.write", Some("w/x"));
        e.body = format!(r#"{{"version":{version},"created":{created}}}"#);
        e
    };
    let append = crate::AuditAppend { build: &build, chain: &scaivault_crypto::chain_hash, sign: &sign };
    for i in 1..=2 {
        let p = path("w/x");
        let w = write(DEFAULT_TENANT, &p, i);
        let tenant = w.tenant.to_owned();
        let seal = |version: u64| ring.seal(&SealContext { tenant: &tenant, path: "w/x", version }, b"v");
        store
            .write_secret(w, &seal, crate::WriteEffects { audit: Some(&append), ..Default::default() })
            .await
            .expect("write");
    }
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, 2);
    let rows = store
        .audit_page(DEFAULT_TENANT, &crate::AuditFilter::default(), crate::AuditOrder::OldestFirst, None, 10)
        .await
        .expect("page");
    assert_eq!(rows[0].body, r#"{"version":1,"created":true}"#);
    assert_eq!(rows[1].body, r#"{"version":2,"created":false}"#);
    // A write refused by check-and-set leaves no record.
    let p = path("w/x");
    let mut w = write(DEFAULT_TENANT, &p, 3);
    w.cas = Some(0);
    let seal = |version: u64| ring.seal(&SealContext { tenant: DEFAULT_TENANT, path: "w/x", version }, b"v");
    assert!(
        store
            .write_secret(w, &seal, crate::WriteEffects { audit: Some(&append), ..Default::default() })
            .await
            .is_err()
    );
    assert_eq!(check_chain(&store, DEFAULT_TENANT).await, 2);
}
