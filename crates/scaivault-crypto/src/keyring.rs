use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::envelope::{KEY_LEN, open_bytes, random_key, seal_bytes};
use crate::{CryptoError, SealContext, SealedSecret, SecretBytes};

const MASTER_LABEL: &[u8] = b"scaivault/master-key/v1";
const DEK_LABEL: &[u8] = b"scaivault/data-key/v1";
const DATA_LABEL: &[u8] = b"scaivault/data/v1";

/// The root of trust from the key file or `SCAIVAULT_MASTER_KEY`. It wraps only master keys, so it
/// sees a handful of random-nonce uses in its life.
pub struct RootKey(Zeroizing<[u8; KEY_LEN]>);

impl RootKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<RootKey, CryptoError> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey(format!("expected {KEY_LEN} bytes, got {}", bytes.len())))?;
        Ok(RootKey(Zeroizing::new(arr)))
    }
}

impl RootKey {
    pub(crate) fn expose_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

/// A master key as storage keeps it: wrapped by the root key, bound to its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMasterKey {
    pub version: u32,
    pub wrapped: Vec<u8>,
}

struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    /// Wraps this process may still make with this key: reserved durably in storage beforehand, so
    /// the count of random-nonce uses survives crashes (a crash can only over-count).
    budget: AtomicU64,
}

/// The versioned master keys. Data keys are wrapped by the newest version; older versions stay to
/// unwrap what has not been re-wrapped yet.
pub struct KeyRing {
    root: RootKey,
    keys: BTreeMap<u32, MasterKey>,
    rng: SystemRandom,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("versions", &self.versions()).finish()
    }
}

fn master_aad(version: u32) -> Vec<u8> {
    let mut aad = MASTER_LABEL.to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

impl KeyRing {
    pub fn new(root: RootKey) -> KeyRing {
        KeyRing { root, keys: BTreeMap::new(), rng: SystemRandom::new() }
    }

    /// Makes a fresh random master key with `version`, adds it, and returns what storage must keep.
    pub fn create_master_key(&mut self, version: u32) -> Result<StoredMasterKey, CryptoError> {
        let stored = self.new_master_key(version)?;
        self.load_master_key(&stored)?;
        Ok(stored)
    }

    /// Makes a fresh random master key wrapped by the root key, without adding it: the caller stores
    /// it first and then loads it, so no data is sealed under a key storage does not hold.
    pub fn new_master_key(&self, version: u32) -> Result<StoredMasterKey, CryptoError> {
        let key = random_key(&self.rng)?;
        let wrapped = seal_bytes(&self.rng, &self.root.0, &master_aad(version), key.as_ref())?;
        Ok(StoredMasterKey { version, wrapped })
    }

    /// Unwraps a stored master key with the root key. Fails with `WrongRootKey` when the root key is
    /// not the one this storage was set up with.
    pub fn load_master_key(&mut self, stored: &StoredMasterKey) -> Result<(), CryptoError> {
        if self.keys.contains_key(&stored.version) {
            return Ok(());
        }
        let plain = open_bytes(&self.root.0, &master_aad(stored.version), &stored.wrapped)
            .map_err(|_| CryptoError::WrongRootKey(stored.version))?;
        let arr: [u8; KEY_LEN] = plain
            .expose()
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("stored master key has the wrong length".into()))?;
        self.keys.insert(stored.version, MasterKey { bytes: Zeroizing::new(arr), budget: AtomicU64::new(0) });
        Ok(())
    }

    pub fn current_version(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    pub fn contains(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    /// Adds wraps that storage has durably reserved for `version`.
    pub fn add_wrap_budget(&self, version: u32, wraps: u64) {
        if let Some(key) = self.keys.get(&version) {
            key.budget.fetch_add(wraps, Ordering::SeqCst);
        }
    }

    pub fn wrap_budget(&self, version: u32) -> u64 {
        self.keys.get(&version).map_or(0, |k| k.budget.load(Ordering::SeqCst))
    }

    fn take_current_wrap(&self) -> Result<(u32, &MasterKey), CryptoError> {
        let (&version, key) = self.keys.iter().next_back().ok_or(CryptoError::EmptyKeyRing)?;
        key.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .map_err(|_| CryptoError::WrapBudgetExhausted(version))?;
        Ok((version, key))
    }

    fn key(&self, version: u32) -> Result<&MasterKey, CryptoError> {
        self.keys.get(&version).ok_or(CryptoError::UnknownKeyVersion(version))
    }

    /// Encrypts `plaintext` under a fresh data key bound to `ctx`, and wraps the data key with the
    /// current master key (one wrap of its budget).
    pub fn seal(&self, ctx: &SealContext<'_>, plaintext: &[u8]) -> Result<SealedSecret, CryptoError> {
        let (version, master) = self.take_current_wrap()?;
        let dek = random_key(&self.rng)?;
        let ciphertext = seal_bytes(&self.rng, &dek, &ctx.aad(DATA_LABEL, None), plaintext)?;
        let wrapped = seal_bytes(&self.rng, &master.bytes, &ctx.aad(DEK_LABEL, Some(version)), dek.as_ref())?;
        Ok(SealedSecret::new(version, wrapped, ciphertext))
    }

    fn unwrap_dek(
        &self,
        ctx: &SealContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let master = self.key(sealed.key_version())?;
        let dek =
            open_bytes(&master.bytes, &ctx.aad(DEK_LABEL, Some(sealed.key_version())), sealed.wrapped_dek())?;
        let arr: [u8; KEY_LEN] = dek.expose().try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(Zeroizing::new(arr))
    }

    /// Decrypts a sealed secret; any change to its bytes, its binding or its key fails.
    pub fn open(&self, ctx: &SealContext<'_>, sealed: &SealedSecret) -> Result<SecretBytes, CryptoError> {
        let dek = self.unwrap_dek(ctx, sealed)?;
        open_bytes(&dek, &ctx.aad(DATA_LABEL, None), sealed.ciphertext())
    }

    /// Re-wraps the data key with the current master key; the data ciphertext is not touched. The data
    /// is verified first so a corrupt row is never re-wrapped into looking fresh.
    pub fn rewrap(&self, ctx: &SealContext<'_>, sealed: &SealedSecret) -> Result<SealedSecret, CryptoError> {
        let dek = self.unwrap_dek(ctx, sealed)?;
        open_bytes(&dek, &ctx.aad(DATA_LABEL, None), sealed.ciphertext())?;
        let (version, master) = self.take_current_wrap()?;
        let wrapped = seal_bytes(&self.rng, &master.bytes, &ctx.aad(DEK_LABEL, Some(version)), dek.as_ref())?;
        Ok(SealedSecret::new(version, wrapped, sealed.ciphertext().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(versions: &[u32]) -> KeyRing {
        let mut ring = KeyRing::new(RootKey::from_bytes(&[7u8; 32]).unwrap());
        for &v in versions {
            ring.create_master_key(v).unwrap();
            ring.add_wrap_budget(v, 100);
        }
        ring
    }

    const CTX: SealContext<'static> =
        SealContext { tenant: "tnt_default", path: "app/db/password", version: 3 };

    #[test]
    fn seal_open_round_trip() {
        let ring = ring_with(&[1]);
        let sealed = ring.seal(&CTX, b"hunter2").unwrap();
        assert_eq!(ring.open(&CTX, &sealed).unwrap().expose(), b"hunter2");
        assert!(!sealed.ciphertext().windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn any_flipped_byte_fails() {
        let ring = ring_with(&[1]);
        let sealed = ring.seal(&CTX, b"value").unwrap();
        for i in 0..sealed.ciphertext().len() {
            let mut ct = sealed.ciphertext().to_vec();
            ct[i] ^= 0x01;
            let bad = SealedSecret::from_stored(1, sealed.wrapped_dek().to_vec(), ct);
            assert!(matches!(ring.open(&CTX, &bad), Err(CryptoError::Decrypt)), "byte {i}");
        }
        for i in 0..sealed.wrapped_dek().len() {
            let mut w = sealed.wrapped_dek().to_vec();
            w[i] ^= 0x80;
            let bad = SealedSecret::from_stored(1, w, sealed.ciphertext().to_vec());
            assert!(ring.open(&CTX, &bad).is_err(), "wrapped byte {i}");
        }
    }

    #[test]
    fn moved_ciphertext_fails() {
        let ring = ring_with(&[1]);
        let sealed = ring.seal(&CTX, b"value").unwrap();
        for other in [
            SealContext { tenant: "tnt_other", ..CTX },
            SealContext { path: "app/db/passwore", ..CTX },
            SealContext { version: 4, ..CTX },
            SealContext { tenant: "tnt_defaultapp", path: "/db/password", version: 3 },
        ] {
            assert!(ring.open(&other, &sealed).is_err(), "{other:?}");
        }
    }

    #[test]
    fn budget_is_enforced() {
        let mut ring = KeyRing::new(RootKey::from_bytes(&[1u8; 32]).unwrap());
        ring.create_master_key(1).unwrap();
        assert!(matches!(ring.seal(&CTX, b"x"), Err(CryptoError::WrapBudgetExhausted(1))));
        ring.add_wrap_budget(1, 2);
        ring.seal(&CTX, b"x").unwrap();
        ring.seal(&CTX, b"x").unwrap();
        assert!(ring.seal(&CTX, b"x").is_err());
    }

    #[test]
    fn rewrap_moves_to_newest_key_and_keeps_data() {
        let mut ring = ring_with(&[1]);
        let sealed = ring.seal(&CTX, b"value").unwrap();
        ring.create_master_key(2).unwrap();
        ring.add_wrap_budget(2, 10);
        let re = ring.rewrap(&CTX, &sealed).unwrap();
        assert_eq!(re.key_version(), 2);
        assert_eq!(re.ciphertext(), sealed.ciphertext());
        assert_eq!(ring.open(&CTX, &re).unwrap().expose(), b"value");
    }

    #[test]
    fn wrong_root_key_is_detected() {
        let mut ring = ring_with(&[1]);
        let stored = ring.create_master_key(2).unwrap();
        let mut other = KeyRing::new(RootKey::from_bytes(&[9u8; 32]).unwrap());
        assert!(matches!(other.load_master_key(&stored), Err(CryptoError::WrongRootKey(2))));
        let mut same = KeyRing::new(RootKey::from_bytes(&[7u8; 32]).unwrap());
        same.load_master_key(&stored).unwrap();
        // A stored key relabelled with another version does not unwrap.
        let relabelled = StoredMasterKey { version: 3, wrapped: stored.wrapped.clone() };
        assert!(same.load_master_key(&relabelled).is_err());
    }

    proptest::proptest! {
        #[test]
        fn envelope_round_trips(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048), version in 1u64..u64::MAX) {
            let ring = ring_with(&[1]);
            let ctx = SealContext { tenant: "t", path: "p/q", version };
            let sealed = ring.seal(&ctx, &data).unwrap();
            let opened = ring.open(&ctx, &sealed).unwrap();
            proptest::prop_assert_eq!(opened.expose(), &data[..]);
        }
    }
}
