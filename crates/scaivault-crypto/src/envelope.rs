use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes};

pub(crate) const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// What a ciphertext is bound to. Moving a ciphertext to another tenant, path or version makes it
/// fail to open, because all three are in the additional authenticated data of both the data and
/// the wrapped data key.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub tenant: &'a str,
    pub path: &'a str,
    pub version: u64,
}

impl SealContext<'_> {
    /// Length-prefixed so that no two contexts share an encoding (`a/b` + `c` vs `a` + `b/c`).
    pub(crate) fn aad(&self, label: &[u8], key_version: Option<u32>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(label.len() + self.tenant.len() + self.path.len() + 32);
        aad.extend_from_slice(label);
        for part in [self.tenant.as_bytes(), self.path.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        if let Some(kv) = key_version {
            aad.extend_from_slice(&kv.to_be_bytes());
        }
        aad
    }
}

/// An encrypted secret version as storage keeps it: the data ciphertext and its data key wrapped by
/// master key `key_version`. Plaintext can become this type only through [`crate::KeyRing::seal`].
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    key_version: u32,
    wrapped_dek: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SealedSecret {
    /// Rebuilds a sealed secret from the bytes storage returned. Opening it still verifies everything.
    pub fn from_stored(key_version: u32, wrapped_dek: Vec<u8>, ciphertext: Vec<u8>) -> Self {
        SealedSecret { key_version, wrapped_dek, ciphertext }
    }

    pub(crate) fn new(key_version: u32, wrapped_dek: Vec<u8>, ciphertext: Vec<u8>) -> Self {
        SealedSecret { key_version, wrapped_dek, ciphertext }
    }

    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    pub fn wrapped_dek(&self) -> &[u8] {
        &self.wrapped_dek
    }

    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_version", &self.key_version)
            .field("wrapped_dek_len", &self.wrapped_dek.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

pub(crate) fn random_key(rng: &SystemRandom) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill(key.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(key)
}

fn less_safe_key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    // A 32-byte slice is always a valid AES-256 key, so this cannot fail.
    #[allow(clippy::expect_used)]
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// AES-256-GCM with a random 96-bit nonce; output is `nonce || ciphertext || tag`.
pub(crate) fn seal_bytes(
    rng: &SystemRandom,
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let mut in_out = out.split_off(NONCE_LEN);
    less_safe_key(key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| CryptoError::Decrypt)?;
    out.append(&mut in_out);
    Ok(out)
}

pub(crate) fn open_bytes(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = SecretBytes::new(body.to_vec());
    let len = {
        let bytes = buf.expose_mut();
        let plain = less_safe_key(key)
            .open_in_place(nonce, Aad::from(aad), bytes)
            .map_err(|_| CryptoError::Decrypt)?;
        plain.len()
    };
    buf.truncate(len);
    Ok(buf)
}
