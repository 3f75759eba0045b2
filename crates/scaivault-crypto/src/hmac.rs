//! HMAC-SHA256, SHA-256 and raw random bytes for callers outside this crate (webhook signatures, the
//! AWS request signatures of federation), so that ring stays the one crypto provider and no other
//! crate hand-rolls a MAC, a digest or a constant-time compare.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::CryptoError;

fn sign(key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    ctx.sign()
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
///
/// The message is taken in parts so callers can sign `"{timestamp}." + body` without copying the body.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(sign(key, parts).as_ref());
    out
}

/// Whether `tag` is the HMAC-SHA256 of the concatenated `parts` under `key`.
///
/// The comparison is `ring::hmac::verify`'s constant-time one, so a caller checking guesses learns
/// nothing from timing; a tag of the wrong length is simply false. ring's verify takes one message
/// slice (its bare compare is deprecated), so several parts are joined first: webhook bodies are small.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    match parts {
        [one] => hmac::verify(&key, one, tag).is_ok(),
        _ => hmac::verify(&key, &parts.concat(), tag).is_ok(),
    }
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// SHA-1 of a certificate's DER: its thumbprint, as the `x5t` JWS header and Microsoft Entra ID
/// name a certificate. An identifier only, never used to verify anything (SHA-1 is broken for that).
pub fn sha1_thumbprint(der: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref());
    out
}

/// `n` bytes from the system CSPRNG, for secrets that are not tokens or ids (webhook signing keys).
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; n];
    SystemRandom::new().fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_of_parts_is_that_of_their_concatenation() {
        // FIPS 180-2, "abc".
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex(&sha256(&[b"abc"])), expected);
        assert_eq!(hex(&sha256(&[b"a", b"", b"bc"])), expected);
    }

    #[test]
    fn sha1_thumbprint_is_fips_180s_sha1() {
        // FIPS 180-2, "abc".
        assert_eq!(hex(&sha1_thumbprint(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn rfc4231_test_case_1() {
        let tag = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(hex(&tag), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    }

    #[test]
    fn rfc4231_test_case_2_in_parts() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let whole = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        let parts = hmac_sha256(b"Jefe", &[b"what do ya ", b"", b"want for nothing?"]);
        assert_eq!(hex(&whole), expected);
        assert_eq!(whole, parts);
    }

    #[test]
    fn verify_accepts_the_tag_and_nothing_else() {
        let tag = hmac_sha256(b"key", &[b"1700000000.", b"{}"]);
        assert!(verify_hmac_sha256(b"key", &[b"1700000000.{}"], &tag));
        assert!(!verify_hmac_sha256(b"kez", &[b"1700000000.{}"], &tag));
        assert!(!verify_hmac_sha256(b"key", &[b"1700000001.{}"], &tag));
        assert!(!verify_hmac_sha256(b"key", &[b"1700000000.{}"], &tag[..31]));
        assert!(!verify_hmac_sha256(b"key", &[b"1700000000.{}"], &[]));
        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(!verify_hmac_sha256(b"key", &[b"1700000000.{}"], &flipped));
    }

    #[test]
    fn random_bytes_have_the_length_asked_and_differ() {
        let a = random_bytes(32).unwrap();
        let b = random_bytes(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(random_bytes(0).unwrap().is_empty());
    }
}
