//! Placing audit records in their tenants' hash chains, the same way in every backend (the hash
//! itself comes from the crypto crate, through a [`ChainFn`]).

use std::collections::BTreeMap;

use crate::{ChainFn, NewAuditEntry, StoreError};

/// `(seq, hash)` of a chain's newest record.
pub type ChainHead = (u64, [u8; 32]);

/// An audit record placed in its chain: the entry, its `seq`, its predecessor's hash and its own.
pub type ChainedRow<'a> = (&'a NewAuditEntry, u64, [u8; 32], [u8; 32]);

/// Places `entries`, in order, after the heads in `heads`, moving each head as it goes; `heads`
/// ends up holding the new head of every chain touched. Every entry's tenant must have its head
/// loaded: a chain is never silently restarted.
pub fn chain_entries<'a>(
    entries: &'a [NewAuditEntry],
    heads: &mut BTreeMap<&'a str, ChainHead>,
    chain: &ChainFn<'_>,
) -> Result<Vec<ChainedRow<'a>>, StoreError> {
    entries
        .iter()
        .map(|e| {
            let head = heads.get_mut(e.tenant.as_str()).ok_or_else(|| {
                StoreError::Backend(format!("the audit head of {} was not loaded", e.tenant))
            })?;
            let (seq, prev) = (head.0 + 1, head.1);
            let hash = chain(&e.tenant, seq, &prev, e.body.as_bytes());
            *head = (seq, hash);
            Ok((e, seq, prev, hash))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, body: &str) -> NewAuditEntry {
        NewAuditEntry {
            tenant: tenant.into(),
            id: format!("aud_{body}"),
            timestamp: chrono::DateTime::UNIX_EPOCH,
            identity_id: "u".into(),
            action: "secret.read".into(),
            secret_path: None,
            outcome: "success".into(),
            body: body.into(),
        }
    }

    #[test]
    fn each_tenant_continues_its_own_chain() {
        // A stand-in hash: the predecessor's first byte plus the body's length.
        let chain = |_: &str, _: u64, prev: &[u8; 32], body: &[u8]| {
            let mut h = [0u8; 32];
            h[0] = prev[0] + body.len() as u8;
            h
        };
        let entries = [entry("a", "x"), entry("b", "yy"), entry("a", "zzz")];
        let mut heads = BTreeMap::from([("a", (4, [10u8; 32])), ("b", (0, [0u8; 32]))]);
        let rows = chain_entries(&entries, &mut heads, &chain).expect("chained");
        let placed: Vec<(u64, u8, u8)> =
            rows.iter().map(|(_, seq, prev, hash)| (*seq, prev[0], hash[0])).collect();
        assert_eq!(placed, vec![(5, 10, 11), (1, 0, 2), (6, 11, 14)]);
        assert_eq!((heads["a"].0, heads["a"].1[0]), (6, 14));
        assert_eq!((heads["b"].0, heads["b"].1[0]), (1, 2));
        let mut missing = BTreeMap::from([("a", (0, [0u8; 32]))]);
        assert!(chain_entries(&entries, &mut missing, &chain).is_err(), "b's head was never loaded");
    }
}
