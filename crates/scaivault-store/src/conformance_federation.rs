//! Conformance cases of federation backends' configurations.

use super::{Dyn, at, setup};
use crate::{DEFAULT_TENANT, FederationBackendRecord, StoreError, SyncPathRecord, SyncPaths, SyncRunRecord};

/// More than any case here creates.
const ROOMY: u32 = 100;

fn backend(id: &str, name: &str, mount: &str) -> FederationBackendRecord {
    FederationBackendRecord {
        tenant: DEFAULT_TENANT.into(),
        id: format!("fed_{id}"),
        name: name.into(),
        backend_type: "hashicorp_vault".into(),
        mode: "proxy".into(),
        mount: mount.into(),
        config: "{\"connection\":{\"address\":\"http://vault:8200\"}}".into(),
        syncs: false,
        created_at: at(1),
        updated_at: at(1),
    }
}

pub async fn federation_backends_round_trip(store: Dyn) {
    setup(&store).await;
    let a = backend("a", "vault-prod", "external/hashicorp");
    store.create_federation_backend(&a, ROOMY).await.expect("create");
    // Ids, names and mounts are each the tenant's own.
    for taken in [backend("a", "other", "external/other"), backend("b", "vault-prod", "external/other")] {
        assert!(
            matches!(store.create_federation_backend(&taken, ROOMY).await, Err(StoreError::AlreadyExists)),
            "{taken:?}"
        );
    }
    let same_mount =
        store.create_federation_backend(&backend("b", "other", "external/hashicorp"), ROOMY).await;
    assert!(matches!(&same_mount, Err(StoreError::MountTaken { id, .. }) if id == "fed_a"), "{same_mount:?}");
    let b = backend("b", "aws", "external/aws");
    store.create_federation_backend(&b, ROOMY).await.expect("create b");
    let mut elsewhere = backend("a", "vault-prod", "external/hashicorp");
    elsewhere.tenant = "tnt_other".into();
    store.create_federation_backend(&elsewhere, ROOMY).await.expect("another tenant may reuse all three");

    assert_eq!(store.get_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("get"), a);
    assert!(matches!(store.get_federation_backend(DEFAULT_TENANT, "fed_z").await, Err(StoreError::NotFound)));
    let ids = |list: Vec<FederationBackendRecord>| list.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_federation_backends(DEFAULT_TENANT, None, 10).await.expect("list")),
        ["fed_a", "fed_b"]
    );
    assert_eq!(
        ids(store.list_federation_backends(DEFAULT_TENANT, Some("fed_a"), 10).await.expect("page")),
        ["fed_b"]
    );
    assert_eq!(ids(store.list_federation_backends(DEFAULT_TENANT, None, 1).await.expect("limit")), ["fed_a"]);

    let mut changed = a.clone();
    changed.mode = "sync".into();
    changed.syncs = true;
    changed.config = "{\"connection\":{\"address\":\"http://vault-2:8200\"}}".into();
    changed.updated_at = at(2);
    store.update_federation_backend(&changed, SyncPaths::Keep).await.expect("update");
    assert_eq!(store.get_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("get"), changed);
    let mut clash = changed.clone();
    clash.mount = "external/aws".into();
    assert!(matches!(
        store.update_federation_backend(&clash, SyncPaths::Keep).await,
        Err(StoreError::MountTaken { .. })
    ));
    // Which backend is meant comes before its mount: a missing one is not found, an existing id
    // is not created again, whatever the mount.
    for missing in [backend("z", "z", "z/z"), backend("z", "z", "external/aws/inside")] {
        assert!(matches!(
            store.update_federation_backend(&missing, SyncPaths::Keep).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(matches!(
        store.create_federation_backend(&backend("b", "b-again", "external/aws/inside"), ROOMY).await,
        Err(StoreError::AlreadyExists)
    ));

    store.delete_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("delete");
    assert!(matches!(
        store.delete_federation_backend(DEFAULT_TENANT, "fed_a").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ids(store.list_federation_backends(DEFAULT_TENANT, None, 10).await.expect("list")), ["fed_b"]);
    assert!(store.get_federation_backend("tnt_other", "fed_a").await.is_ok(), "the other tenant's stays");
}

pub async fn mounts_never_overlap(store: Dyn) {
    setup(&store).await;
    store.create_federation_backend(&backend("a", "a", "external/vault"), ROOMY).await.expect("create");
    // Around it, inside it, or the same path: refused, naming the backend in the way.
    for (id, mount) in [("b", "external"), ("c", "external/vault/team"), ("d", "external/vault")] {
        let refused = store.create_federation_backend(&backend(id, id, mount), ROOMY).await;
        assert!(
            matches!(&refused, Err(StoreError::MountTaken { id, mount }) if id == "fed_a" && mount == "external/vault"),
            "{mount}: {refused:?}"
        );
    }
    // Beside it (a longer name is another path), or in another tenant: taken.
    store.create_federation_backend(&backend("e", "e", "external/vaults"), ROOMY).await.expect("beside");
    let mut elsewhere = backend("f", "f", "external/vault/team");
    elsewhere.tenant = "tnt_other".into();
    store.create_federation_backend(&elsewhere, ROOMY).await.expect("another tenant's tree");
    // Moving one onto or into another is refused the same way; a backend keeps its own mount.
    let mut moved = backend("e", "e", "external/vault/x");
    assert!(matches!(
        store.update_federation_backend(&moved, SyncPaths::Keep).await,
        Err(StoreError::MountTaken { .. })
    ));
    moved.mount = "external/vaults".into();
    moved.mode = "sync".into();
    store.update_federation_backend(&moved, SyncPaths::Keep).await.expect("its own mount");
    let stored = store.get_federation_backend(DEFAULT_TENANT, "fed_e").await.expect("get");
    assert_eq!((stored.mount.as_str(), stored.mode.as_str()), ("external/vaults", "sync"));
}

/// Creates `records` at once, alternately through `a` and `b`, with at most `limit` backends a
/// tenant; answers how many were created. Any refusal but `refused` fails the test.
async fn create_at_once(
    a: &Dyn,
    b: &Dyn,
    records: Vec<FederationBackendRecord>,
    limit: u32,
    refused: fn(&StoreError) -> bool,
) -> u32 {
    let tasks: Vec<_> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.create_federation_backend(&record, limit).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => created += 1,
            Err(e) if refused(&e) => {}
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    created
}

/// Two replicas (two stores on one database) creating backends at once whose mounts all nest in
/// one another: exactly one is created, whatever the interleaving.
pub async fn replicas_never_nest_mounts(a: Dyn, b: Dyn) {
    setup(&a).await;
    for round in 0..4 {
        let records = (0..8)
            .map(|i| {
                let mut mount = format!("nest{round}");
                for level in 0..i {
                    mount.push_str(&format!("/l{level}"));
                }
                backend(&format!("r{round}_{i}"), &format!("r{round}-{i}"), &mount)
            })
            .collect();
        let created =
            create_at_once(&a, &b, records, ROOMY, |e| matches!(e, StoreError::MountTaken { .. })).await;
        assert_eq!(created, 1, "round {round}: nested mounts were created side by side");
    }
}

/// Two replicas creating backends at once past the tenant's limit: exactly the limit is created,
/// the rest refused, whatever the interleaving.
pub async fn replicas_stop_at_the_backend_limit(a: Dyn, b: Dyn) {
    setup(&a).await;
    const LIMIT: u32 = 3;
    let records =
        (0..8).map(|i| backend(&format!("l{i}"), &format!("l-{i}"), &format!("limit/{i}"))).collect();
    let refused = |e: &StoreError| matches!(e, StoreError::LimitReached { limit: LIMIT, .. });
    let created = create_at_once(&a, &b, records, LIMIT, refused).await;
    assert_eq!(created, LIMIT);
    let held = a.list_federation_backends(DEFAULT_TENANT, None, 100).await.expect("list");
    assert_eq!(held.len(), LIMIT as usize);
    let mut elsewhere = backend("l9", "l-9", "limit/9");
    elsewhere.tenant = "tnt_other".into();
    b.create_federation_backend(&elsewhere, LIMIT).await.expect("the limit is each tenant's own");
}

pub async fn sync_runs_lease_and_path_states(store: Dyn) {
    setup(&store).await;
    let t = DEFAULT_TENANT;
    let mut synced = backend("s", "vault-sync", "external/sync");
    synced.mode = "proxy".into();
    synced.syncs = true;
    store.create_federation_backend(&synced, ROOMY).await.expect("create");
    store
        .create_federation_backend(&backend("p", "vault-proxy", "external/proxy"), ROOMY)
        .await
        .expect("create");

    // A backend that syncs (here a proxy one with a rule in sync mode) and was never synced is
    // due at once; one that does not, never.
    assert_eq!(store.due_sync_runs(at(10), 10).await.expect("due"), [(t.to_owned(), "fed_s".to_owned())]);
    assert_eq!(store.get_sync_run(t, "fed_s").await.expect("get"), None);

    // One claim holds the backend until its lease runs out.
    assert!(store.claim_sync_run(t, "fed_s", at(10), at(70), true).await.expect("claim"));
    assert!(!store.claim_sync_run(t, "fed_s", at(20), at(80), false).await.expect("held"));
    assert!(store.due_sync_runs(at(20), 10).await.expect("due").is_empty(), "a held backend is not due");
    assert!(store.claim_sync_run(t, "fed_s", at(70), at(130), false).await.expect("expired lease"));

    let run = SyncRunRecord {
        tenant: t.into(),
        backend_id: "fed_s".into(),
        next_sync_at: at(400),
        lease_until: None,
        last_sync_at: Some(at(71)),
        last_duration_ms: Some(1_250),
        report: Some("{\"synced\":2}".into()),
        consecutive_failures: 1,
    };
    store.finish_sync_run(&run).await.expect("finish");
    assert_eq!(store.get_sync_run(t, "fed_s").await.expect("get"), Some(run.clone()));
    // Finished: not due before its next time (a scheduled claim fails), but a manual sync may run.
    assert!(store.due_sync_runs(at(399), 10).await.expect("due").is_empty());
    assert!(!store.claim_sync_run(t, "fed_s", at(100), at(160), true).await.expect("not due"));
    assert_eq!(store.due_sync_runs(at(400), 10).await.expect("due").len(), 1);
    assert!(store.claim_sync_run(t, "fed_s", at(100), at(160), false).await.expect("manual"));

    // Path states: created, replaced, listed in path order, read one by one.
    let state = |path: &str, local: u64, conflict: bool| SyncPathRecord {
        tenant: t.into(),
        backend_id: "fed_s".into(),
        path: path.into(),
        remote_version: format!("r{local}"),
        local_version: local,
        conflict,
        remote_at: conflict.then(|| at(5)),
        local_at: conflict.then(|| at(6)),
        updated_at: at(local as i64),
    };
    store.put_sync_path(&state("external/sync/b", 1, false), at(1)).await.expect("put");
    store.put_sync_path(&state("external/sync/a", 1, false), at(1)).await.expect("put");
    store.put_sync_path(&state("external/sync/a", 3, true), at(1)).await.expect("replace");
    let listed = store.list_sync_paths(t, "fed_s").await.expect("list");
    assert_eq!(listed, [state("external/sync/a", 3, true), state("external/sync/b", 1, false)]);
    assert_eq!(
        store.get_sync_path(t, "fed_s", "external/sync/b").await.expect("get"),
        Some(state("external/sync/b", 1, false))
    );
    assert_eq!(store.get_sync_path(t, "fed_s", "external/sync/c").await.expect("get"), None);
    assert!(store.list_sync_paths("tnt_other", "fed_s").await.expect("list").is_empty());
    // A state is stored only while the backend is as its writer read it.
    store.put_sync_path(&state("external/sync/c", 1, false), at(0)).await.expect("stale put");
    assert_eq!(store.get_sync_path(t, "fed_s", "external/sync/c").await.expect("get"), None);
    store.put_sync_path(&state("external/sync/a", 9, false), at(0)).await.expect("stale put");
    assert_eq!(
        store.get_sync_path(t, "fed_s", "external/sync/a").await.expect("get"),
        Some(state("external/sync/a", 3, true)),
        "a stale put replaced a state"
    );

    // An update forgets them only when asked, and only when it lands.
    let mut moved = synced.clone();
    moved.mount = "external/proxy/inside".into();
    let refused = store.update_federation_backend(&moved, SyncPaths::Forget).await;
    assert!(matches!(refused, Err(StoreError::MountTaken { .. })), "{refused:?}");
    assert_eq!(
        store.list_sync_paths(t, "fed_s").await.expect("list").len(),
        2,
        "a refused update forgot them"
    );
    moved.mount = "external/sync".into();
    store.update_federation_backend(&moved, SyncPaths::Keep).await.expect("update");
    assert_eq!(store.list_sync_paths(t, "fed_s").await.expect("list").len(), 2);
    moved.mount = "external/moved".into();
    store.update_federation_backend(&moved, SyncPaths::Forget).await.expect("update");
    assert!(store.list_sync_paths(t, "fed_s").await.expect("list").is_empty());

    // Deleting the backend forgets its schedule and states.
    store.put_sync_path(&state("external/sync/a", 1, false), at(1)).await.expect("put");
    store.delete_federation_backend(t, "fed_s").await.expect("delete");
    assert_eq!(store.get_sync_run(t, "fed_s").await.expect("get"), None);
    assert!(store.list_sync_paths(t, "fed_s").await.expect("list").is_empty());
    assert!(store.due_sync_runs(at(1_000), 10).await.expect("due").is_empty());
}
