//! Conformance cases of rotation: policies, schedules found through their wake time, conditional
//! transitions, and a write completing a waiting rotation in its own transaction.

use std::sync::Mutex;

use scaivault_crypto::SealContext;

use super::{Dyn, at, path, put, setup, write};
use crate::{
    AssignmentRecord, DEFAULT_TENANT, EventsFnRef, NewEvent, RotationCompletion, RotationPolicyRecord,
    StoreError, WriteEffects,
};

fn policy(id: &str) -> RotationPolicyRecord {
    RotationPolicyRecord {
        tenant: DEFAULT_TENANT.into(),
        id: format!("rot_{id}"),
        name: id.into(),
        description: "d".into(),
        interval: "90d".into(),
        grace_period: "48h".into(),
        warn_before: "7d,1d".into(),
        rotation_timeout: "24h".into(),
        auto_generate: false,
        generator: None,
        webhook_ids: vec!["wh_a".into()],
        created_at: at(1),
        updated_at: at(1),
    }
}

fn assignment(p: &str, policy_id: &str, state: &str, wake: Option<i64>) -> AssignmentRecord {
    AssignmentRecord {
        tenant: DEFAULT_TENANT.into(),
        path: p.into(),
        policy_id: policy_id.into(),
        state: state.into(),
        next_rotation_at: at(100),
        warned: 0,
        due_since: None,
        last_rotated_at: None,
        wake_at: wake.map(at),
        revision: 0,
        created_at: at(1),
        updated_at: at(1),
    }
}

fn event(id: &str, p: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        tenant: DEFAULT_TENANT.into(),
        event_type: "rotation.due".into(),
        path: Some(p.into()),
        created_at: at(5),
        body: "{}".into(),
        deliveries: Vec::new(),
    }
}

pub async fn rotation_policies_round_trip(store: Dyn) {
    setup(&store).await;
    store.create_rotation_policy(&policy("a")).await.expect("create");
    assert!(matches!(store.create_rotation_policy(&policy("a")).await, Err(StoreError::AlreadyExists)));
    store.create_rotation_policy(&policy("b")).await.expect("create b");
    assert_eq!(store.get_rotation_policy(DEFAULT_TENANT, "rot_a").await.expect("get"), policy("a"));
    assert!(matches!(store.get_rotation_policy("tnt_other", "rot_a").await, Err(StoreError::NotFound)));
    let ids: Vec<String> = store
        .list_rotation_policies(DEFAULT_TENANT, Some("rot_a"), 10)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["rot_b"]);
    let mut changed = policy("a");
    changed.interval = "30d".into();
    changed.generator = Some("{\"length\":40}".into());
    changed.auto_generate = true;
    store.update_rotation_policy(&changed).await.expect("update");
    assert_eq!(store.get_rotation_policy(DEFAULT_TENANT, "rot_a").await.expect("get"), changed);
    store.assign_rotation(&assignment("x/y", "rot_a", "scheduled", Some(100))).await.expect("assign");
    store.delete_rotation_policy(DEFAULT_TENANT, "rot_a").await.expect("delete");
    assert!(store.get_assignment(DEFAULT_TENANT, "x/y").await.expect("get").is_none(), "assignments go too");
    assert!(matches!(store.delete_rotation_policy(DEFAULT_TENANT, "rot_a").await, Err(StoreError::NotFound)));
}

pub async fn schedules_move_only_from_the_revision_they_read(store: Dyn) {
    setup(&store).await;
    store.create_rotation_policy(&policy("a")).await.expect("policy");
    store.assign_rotation(&assignment("s/late", "rot_a", "scheduled", Some(300))).await.expect("assign");
    store.assign_rotation(&assignment("s/early", "rot_a", "scheduled", Some(100))).await.expect("assign");
    store.assign_rotation(&assignment("s/failed", "rot_a", "failed", None)).await.expect("assign");
    assert!(matches!(
        store.assign_rotation(&assignment("s/early", "rot_a", "scheduled", Some(1))).await,
        Err(StoreError::AlreadyExists)
    ));
    let due = store.due_assignments(at(299), 10).await.expect("due");
    assert_eq!(due.iter().map(|(a, _)| a.path.as_str()).collect::<Vec<_>>(), ["s/early"]);
    assert_eq!(due[0].1.id, "rot_a");
    let due = store.due_assignments(at(1_000), 10).await.expect("due");
    assert_eq!(due.iter().map(|(a, _)| a.path.as_str()).collect::<Vec<_>>(), ["s/early", "s/late"]);
    assert_eq!(store.due_assignments(at(1_000), 1).await.expect("due").len(), 1);

    let (current, _) = store.get_assignment(DEFAULT_TENANT, "s/early").await.expect("get").expect("some");
    let next = AssignmentRecord {
        state: "due".into(),
        due_since: Some(at(100)),
        wake_at: Some(at(200)),
        ..current.clone()
    };
    assert!(store.transition_assignment(&next, &[event("evt_1", "s/early")]).await.expect("move"));
    // The same transition again (another replica that read the same revision) changes nothing.
    assert!(!store.transition_assignment(&next, &[event("evt_2", "s/early")]).await.expect("stale"));
    let ids: Vec<String> =
        store.events_after(0, 10).await.expect("events").into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["evt_1"]);
    let (now, _) = store.get_assignment(DEFAULT_TENANT, "s/early").await.expect("get").expect("some");
    assert_eq!((now.state.as_str(), now.revision, now.wake_at), ("due", current.revision + 1, Some(at(200))));
    let listed = store.list_assignments(DEFAULT_TENANT, "rot_a", None, 10).await.expect("list");
    assert_eq!(listed.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["s/early", "s/failed", "s/late"]);
    store.unassign_rotation(DEFAULT_TENANT, "rot_a", "s/late").await.expect("unassign");
    assert!(matches!(
        store.unassign_rotation(DEFAULT_TENANT, "rot_a", "s/late").await,
        Err(StoreError::NotFound)
    ));
}

/// A soft-deleted secret's schedule is paused: the scheduler never finds it, however many paused
/// schedules sit before a live one, and finds it again once the secret is undeleted.
pub async fn a_deleted_secrets_schedule_is_paused(store: Dyn) {
    let ring = setup(&store).await;
    store.create_rotation_policy(&policy("a")).await.expect("policy");
    for (i, p) in ["s/a", "s/b", "s/live"].into_iter().enumerate() {
        put(&store, &ring, write(DEFAULT_TENANT, &path(p), 1), "v").await.expect("write");
        store
            .assign_rotation(&assignment(p, "rot_a", "scheduled", Some(100 + i as i64)))
            .await
            .expect("assign");
    }
    for p in ["s/a", "s/b"] {
        store.soft_delete(DEFAULT_TENANT, p, at(2), &[]).await.expect("delete");
    }
    let due = store.due_assignments(at(1_000), 1).await.expect("due");
    assert_eq!(due.iter().map(|(a, _)| a.path.as_str()).collect::<Vec<_>>(), ["s/live"]);
    store.undelete(DEFAULT_TENANT, "s/b", at(3), &[]).await.expect("undelete");
    let due = store.due_assignments(at(1_000), 10).await.expect("due");
    assert_eq!(due.iter().map(|(a, _)| a.path.as_str()).collect::<Vec<_>>(), ["s/b", "s/live"]);
}

pub async fn a_write_completes_a_waiting_rotation(store: Dyn) {
    let ring = setup(&store).await;
    let p = path("db/main");
    put(&store, &ring, write(DEFAULT_TENANT, &p, 2), "v1").await.expect("v1");
    store.create_rotation_policy(&policy("a")).await.expect("policy");
    store
        .assign_rotation(&AssignmentRecord {
            due_since: Some(at(3)),
            ..assignment("db/main", "rot_a", "due", Some(50))
        })
        .await
        .expect("assign");
    let (waiting, _) = store.get_assignment(DEFAULT_TENANT, "db/main").await.expect("get").expect("some");
    let completion = RotationCompletion {
        next: AssignmentRecord { state: "scheduled".into(), last_rotated_at: Some(at(4)), ..waiting.clone() },
        grace_until: at(4 + 48 * 3600),
    };
    // Meanwhile another replica times the rotation out: the write still completes it.
    let failed = AssignmentRecord { state: "failed".into(), ..waiting.clone() };
    assert!(store.transition_assignment(&failed, &[]).await.expect("time out"));
    let seen = Mutex::new(Vec::new());
    let build = |version: u64, _created: bool, rotated: bool| {
        seen.lock().expect("lock").push((version, rotated));
        Ok(Vec::new())
    };
    let events = EventsFnRef(&build);
    let seal =
        |v: u64| ring.seal(&SealContext { tenant: DEFAULT_TENANT, path: "db/main", version: v }, b"{}");
    let effects =
        WriteEffects { events: Some(&events), rotation: Some(&completion), ..WriteEffects::default() };
    store.write_secret(write(DEFAULT_TENANT, &p, 4), &seal, effects).await.expect("v2");
    // The same completion again is stale: the next write completes nothing.
    store.write_secret(write(DEFAULT_TENANT, &p, 5), &seal, effects).await.expect("v3");
    assert_eq!(*seen.lock().expect("lock"), [(2, true), (3, false)]);
    let (done, _) = store.get_assignment(DEFAULT_TENANT, "db/main").await.expect("get").expect("some");
    assert_eq!((done.state.as_str(), done.last_rotated_at), ("scheduled", Some(at(4))));
    let (_, versions) = store.list_versions(DEFAULT_TENANT, "db/main").await.expect("versions");
    let expiry: Vec<(u64, Option<chrono::DateTime<chrono::Utc>>)> =
        versions.iter().map(|v| (v.version, v.expires_at)).collect();
    assert_eq!(expiry, [(3, None), (2, None), (1, Some(at(4 + 48 * 3600)))]);
}
