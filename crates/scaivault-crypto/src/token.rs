use std::fmt;

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{CryptoError, SecretBytes};

/// Personal access tokens start with this.
pub const TOKEN_PREFIX: &str = "skt_";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random base62 string of `len` characters from the system CSPRNG (rejection sampling, no bias).
pub fn random_string(len: usize) -> Result<String, CryptoError> {
    random_from_alphabet(BASE62, len)
}

/// `len` characters drawn uniformly from `alphabet` (1 to 256 distinct ASCII bytes) with the system
/// CSPRNG: bytes at or above the largest multiple of the alphabet's size are rejected, so no
/// character is favoured.
pub fn random_from_alphabet(alphabet: &[u8], len: usize) -> Result<String, CryptoError> {
    if alphabet.is_empty() || alphabet.len() > 256 || !alphabet.is_ascii() {
        return Err(CryptoError::Random);
    }
    let n = alphabet.len();
    let limit = 256 - 256 % n;
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| CryptoError::Random)?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(alphabet[usize::from(b) % n] as char);
            }
        }
    }
    Ok(out)
}

const ID_CHARS: usize = 20;

/// Bytes from the system CSPRNG, drawn a block at a time: ids are made for every request (its
/// request id, its audit record), and a system call for each would cost more than the rest of the
/// id. Ids are unique names, not secrets; tokens and generated secrets never come from here.
struct IdPool {
    buf: [u8; 512],
    next: usize,
}

impl IdPool {
    fn byte(&mut self) -> Result<u8, CryptoError> {
        if self.next == self.buf.len() {
            SystemRandom::new().fill(&mut self.buf).map_err(|_| CryptoError::Random)?;
            self.next = 0;
        }
        self.next += 1;
        Ok(self.buf[self.next - 1])
    }
}

thread_local! {
    static ID_POOL: std::cell::RefCell<IdPool> = const {
        std::cell::RefCell::new(IdPool { buf: [0; 512], next: 512 })
    };
}

/// An opaque id such as `tok_3kTMd9…` (20 base62 characters, about 119 bits).
pub fn random_id(prefix: &str) -> Result<String, CryptoError> {
    let mut out = String::with_capacity(prefix.len() + ID_CHARS);
    out.push_str(prefix);
    let limit = 256 - 256 % BASE62.len();
    ID_POOL.with_borrow_mut(|pool| {
        while out.len() < prefix.len() + ID_CHARS {
            let b = usize::from(pool.byte()?);
            if b < limit {
                out.push(char::from(BASE62[b % BASE62.len()]));
            }
        }
        Ok::<_, CryptoError>(())
    })?;
    Ok(out)
}

/// A new personal access token: `skt_` + 43 base62 characters (over 256 bits of entropy).
pub fn generate_token() -> Result<SecretBytes, CryptoError> {
    Ok(SecretBytes::new(format!("{TOKEN_PREFIX}{}", random_string(43)?).into_bytes()))
}

/// SHA-256 of a token: tokens are high-entropy, so a fast hash is enough to make a stolen table useless.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

pub fn hash_token(token: &[u8]) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    TokenHash(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_distinct_and_prefixed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(b"skt_"));
        assert_eq!(a.len(), 4 + 43);
        assert!(a.expose()[4..].iter().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(hash_token(a.expose()), hash_token(b.expose()));
    }

    #[test]
    fn alphabets_are_used_evenly() {
        let s = random_from_alphabet(b"abc", 30_000).unwrap();
        for c in ['a', 'b', 'c'] {
            let n = s.chars().filter(|x| *x == c).count();
            assert!((9_000..11_000).contains(&n), "{c}: {n}");
        }
        assert!(random_from_alphabet(b"", 3).is_err());
        assert_eq!(random_from_alphabet(b"x", 5).unwrap(), "xxxxx");
    }

    #[test]
    fn ids_carry_prefix() {
        let id = random_id("tok_").unwrap();
        assert!(id.starts_with("tok_") && id.len() == 24);
    }

    #[test]
    fn ids_stay_distinct_across_pool_refills() {
        // 2,000 ids use the pool's block dozens of times over.
        let ids: std::collections::HashSet<String> = (0..2000).map(|_| random_id("x_").unwrap()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|id| id.len() == 22 && id[2..].bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
