//! Sealed list cursors: a cursor that could name a path the caller may not see is encrypted and
//! authenticated, so it neither reveals that path nor can be forged to start a scan anywhere.

use std::fmt;

use ring::hkdf;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::envelope::{KEY_LEN, open_bytes, seal_bytes};
use crate::{CryptoError, RootKey};

/// AES-256-GCM key for list cursors, derived from the root key with HKDF-SHA256 (so every replica
/// opens every other's cursors).
pub struct CursorKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    rng: SystemRandom,
}

impl fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorKey([redacted])")
    }
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

impl CursorKey {
    pub fn derive(root: &RootKey) -> CursorKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"scaivault/list-cursor/v1");
        let prk = salt.extract(root.expose_bytes());
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        // A 32-byte output from HKDF-SHA256 is always within its limits.
        #[allow(clippy::expect_used)]
        prk.expand(&[b"cursor"], KeyLen)
            .and_then(|okm| okm.fill(key.as_mut()))
            .expect("hkdf expand 32 bytes");
        CursorKey { key, rng: SystemRandom::new() }
    }

    /// `position` sealed for the list named `list` (a cursor of one list does not open as another's).
    pub fn seal(&self, list: &str, position: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_bytes(&self.rng, &self.key, list.as_bytes(), position)
    }

    /// The position a cursor of `list` holds; `None` when it was not sealed here for that list.
    pub fn open(&self, list: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        open_bytes(&self.key, list.as_bytes(), sealed).ok().map(|b| b.expose().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CursorKey {
        CursorKey::derive(&RootKey::from_bytes(&[byte; 32]).expect("root"))
    }

    #[test]
    fn cursors_open_only_for_their_list_and_key_and_hide_the_position() {
        let k = key(1);
        let sealed = k.seal("secrets", b"hidden/path").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"hidden"), "the position shows through");
        assert_eq!(k.open("secrets", &sealed).as_deref(), Some(&b"hidden/path"[..]));
        assert_eq!(k.open("partner_secrets", &sealed), None);
        assert_eq!(key(2).open("secrets", &sealed), None);
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(k.open("secrets", &flipped), None);
        assert_eq!(k.open("secrets", b"short"), None);
        assert_ne!(k.seal("secrets", b"hidden/path").expect("seal"), sealed, "a fresh nonce each time");
    }
}
