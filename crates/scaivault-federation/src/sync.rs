//! What one sync does with one path, decided from what the last sync recorded and what each side
//! holds now. Pure, so every case is tested here; the server carries the decision out.

use crate::RemoteVersion;

/// At most this many of a path's backend versions are copied in by one sync (the newest).
pub const MAX_PULLED_VERSIONS: usize = 100;

/// What the last sync recorded of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSync {
    /// The backend's current version then.
    pub remote: String,
    /// The local current version then.
    pub local: u64,
    /// Flagged by a `manual` conflict.
    pub conflict: bool,
}

/// The decision for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// Both sides are as the last sync left them, or only the local side moved (the backend is
    /// stale by design without write-through, or already has it with write-through).
    Unchanged,
    /// Copy these backend versions (oldest first) in as new local versions.
    Pull(Vec<String>),
    /// Both sides changed since the last sync (or both hold the path and no sync has seen it):
    /// settled by the backend's `conflict_resolution`.
    Diverged,
    /// Flagged by an earlier `manual` conflict: left alone until resolved.
    Flagged,
}

/// Decides one path. `remote` is the backend's versions, oldest first, current last (never
/// empty); `local` the local current version, if the secret exists here.
pub fn decide(last: Option<&LastSync>, remote: &[RemoteVersion], local: Option<u64>) -> SyncAction {
    let Some(current) = remote.last() else { return SyncAction::Unchanged };
    let newest = |from: usize| {
        let from = from.max(remote.len().saturating_sub(MAX_PULLED_VERSIONS));
        SyncAction::Pull(remote[from..].iter().map(|v| v.id.clone()).collect())
    };
    match (last, local) {
        (Some(last), _) if last.conflict => SyncAction::Flagged,
        (None, None) => newest(0),
        (None, Some(_)) => SyncAction::Diverged,
        // The local secret is gone entirely (destroyed and purged): start again from the backend.
        (Some(_), None) => newest(0),
        (Some(last), Some(local)) => {
            let remote_moved = current.id != last.remote;
            let local_moved = local != last.local;
            match (remote_moved, local_moved) {
                (false, _) => SyncAction::Unchanged,
                (true, true) => SyncAction::Diverged,
                (true, false) => {
                    // The versions after the one last synced; if that one is no longer listed
                    // (deleted in the backend), only the current.
                    match remote.iter().position(|v| v.id == last.remote) {
                        Some(i) => newest(i + 1),
                        None => newest(remote.len() - 1),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn versions(ids: &[&str]) -> Vec<RemoteVersion> {
        ids.iter().map(|id| RemoteVersion { id: (*id).to_owned(), created_at: None }).collect()
    }

    fn last(remote: &str, local: u64) -> LastSync {
        LastSync { remote: remote.into(), local, conflict: false }
    }

    fn pull(ids: &[&str]) -> SyncAction {
        SyncAction::Pull(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_new_path_is_pulled_with_its_history() {
        assert_eq!(decide(None, &versions(&["1", "2", "3"]), None), pull(&["1", "2", "3"]));
        let many: Vec<String> = (1..=150).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let SyncAction::Pull(ids) = decide(None, &versions(&many), None) else { panic!() };
        assert_eq!(ids.len(), MAX_PULLED_VERSIONS);
        assert_eq!(ids.first().map(String::as_str), Some("51"), "the newest are kept");
    }

    #[test]
    fn only_what_moved_is_copied() {
        let remote = versions(&["1", "2", "3", "4"]);
        assert_eq!(decide(Some(&last("4", 7)), &remote, Some(7)), SyncAction::Unchanged);
        assert_eq!(decide(Some(&last("2", 7)), &remote, Some(7)), pull(&["3", "4"]));
        assert_eq!(decide(Some(&last("gone", 7)), &remote, Some(7)), pull(&["4"]));
        // Written here only: the backend is left stale, nothing is copied.
        assert_eq!(decide(Some(&last("4", 7)), &remote, Some(9)), SyncAction::Unchanged);
        // Both moved, or both hold it unseen: a conflict.
        assert_eq!(decide(Some(&last("2", 7)), &remote, Some(8)), SyncAction::Diverged);
        assert_eq!(decide(None, &remote, Some(1)), SyncAction::Diverged);
        // Purged here: copied again.
        assert_eq!(decide(Some(&last("4", 7)), &remote, None), pull(&["1", "2", "3", "4"]));
    }

    #[test]
    fn a_flagged_path_is_left_alone() {
        let flagged = LastSync { conflict: true, ..last("1", 1) };
        assert_eq!(decide(Some(&flagged), &versions(&["1", "2"]), Some(5)), SyncAction::Flagged);
    }

    proptest! {
        /// Whatever the states, a pull copies a non-empty tail of the backend's versions that ends
        /// at the current one, never more than the cap, and never when neither side moved.
        #[test]
        fn pulls_are_bounded_tails_ending_at_the_current(
            n in 1usize..300,
            synced in proptest::option::of(0usize..320),
            local in proptest::option::of(0u64..4),
            last_local in 0u64..4,
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
            let remote: Vec<RemoteVersion> =
                ids.iter().map(|id| RemoteVersion { id: id.clone(), created_at: None }).collect();
            let state = synced.map(|i| last(&format!("v{i}"), last_local));
            let action = decide(state.as_ref(), &remote, local);
            if synced == Some(n - 1) && local.is_some() {
                prop_assert_eq!(&action, &SyncAction::Unchanged, "the backend did not move");
            }
            match action {
                SyncAction::Pull(pulled) => {
                    prop_assert!(!pulled.is_empty() && pulled.len() <= MAX_PULLED_VERSIONS);
                    prop_assert_eq!(pulled.last(), ids.last());
                    prop_assert!(ids.ends_with(&pulled));
                    if let (Some(i), Some(_)) = (synced, local) && i < n {
                        prop_assert_eq!(pulled.len(), (n - i - 1).min(MAX_PULLED_VERSIONS), "only the newer ones");
                    }
                }
                SyncAction::Unchanged => {
                    if let (Some(s), Some(_)) = (&state, local) {
                        prop_assert_eq!(&s.remote, &ids[n - 1]);
                    }
                }
                SyncAction::Diverged => prop_assert!(local.is_some()),
                SyncAction::Flagged => prop_assert!(false, "nothing was flagged"),
            }
        }
    }
}
