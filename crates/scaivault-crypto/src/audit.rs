//! The audit log's tamper evidence: each record's hash covers its predecessor's hash, its sequence
//! number and its canonical body; the chain head is checkpointed with an HMAC whose key is derived
//! from the root key, so truncating the newest records (and re-forging the head) is caught too.

use std::fmt;

use ring::digest::{Context, SHA256};
use ring::hkdf;
use ring::hmac;

use crate::RootKey;

/// The hash of the record before the first one.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// `SHA-256("scaivault/audit/v1" || tenant_len || tenant || seq || prev || body)`.
pub fn chain_hash(tenant: &str, seq: u64, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"scaivault/audit/v1");
    ctx.update(&(tenant.len() as u32).to_be_bytes());
    ctx.update(tenant.as_bytes());
    ctx.update(&seq.to_be_bytes());
    ctx.update(prev);
    ctx.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The key that signs audit chain heads, derived from the root key with HKDF-SHA256.
pub struct AuditKey(hmac::Key);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

struct HmacLen;

impl hkdf::KeyType for HmacLen {
    fn len(&self) -> usize {
        32
    }
}

impl AuditKey {
    pub fn derive(root: &RootKey) -> AuditKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"scaivault/audit-head/v1");
        let prk = salt.extract(root.expose_bytes());
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        // A 32-byte output from HKDF-SHA256 is always within its limits.
        #[allow(clippy::expect_used)]
        prk.expand(&[b"audit"], HmacLen)
            .and_then(|okm| okm.fill(bytes.as_mut()))
            .expect("hkdf expand 32 bytes");
        AuditKey(hmac::Key::new(hmac::HMAC_SHA256, bytes.as_ref()))
    }

    fn message(tenant: &str, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(tenant.len() + 44);
        m.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
        m.extend_from_slice(tenant.as_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash);
        m
    }

    /// The MAC of a chain head.
    pub fn sign_head(&self, tenant: &str, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        hmac::sign(&self.0, &Self::message(tenant, seq, hash)).as_ref().to_vec()
    }

    /// Constant-time check of a chain head's MAC.
    pub fn verify_head(&self, tenant: &str, seq: u64, hash: &[u8; 32], mac: &[u8]) -> bool {
        hmac::verify(&self.0, &Self::message(tenant, seq, hash), mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_covers_every_input() {
        let base = chain_hash("t", 1, &GENESIS_HASH, b"{}");
        assert_ne!(base, chain_hash("u", 1, &GENESIS_HASH, b"{}"));
        assert_ne!(base, chain_hash("t", 2, &GENESIS_HASH, b"{}"));
        assert_ne!(base, chain_hash("t", 1, &[1u8; 32], b"{}"));
        assert_ne!(base, chain_hash("t", 1, &GENESIS_HASH, b"{ }"));
        assert_eq!(base, chain_hash("t", 1, &GENESIS_HASH, b"{}"));
    }

    #[test]
    fn head_macs_depend_on_the_root_key() {
        let a = AuditKey::derive(&RootKey::from_bytes(&[1u8; 32]).unwrap());
        let b = AuditKey::derive(&RootKey::from_bytes(&[2u8; 32]).unwrap());
        let mac = a.sign_head("t", 5, &[9u8; 32]);
        assert!(a.verify_head("t", 5, &[9u8; 32], &mac));
        assert!(!a.verify_head("t", 4, &[9u8; 32], &mac));
        assert!(!a.verify_head("t", 5, &[8u8; 32], &mac));
        assert!(!b.verify_head("t", 5, &[9u8; 32], &mac));
    }
}
