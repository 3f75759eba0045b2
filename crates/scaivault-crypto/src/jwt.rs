//! JWT signatures with ring, plugged into `jsonwebtoken` through its [`CryptoProvider`].
//!
//! Three algorithms exist here and nothing else: `RS256` (RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192
//! bit keys), `ES256` (ECDSA on P-256 with SHA-256, fixed-length signatures) and `EdDSA` (Ed25519). Every
//! other algorithm, HMAC included, is refused by both the signer and the verifier factories, whatever
//! key is offered: a public key can never be turned into an HMAC secret here.
//!
//! [`install_jwt_crypto_provider`] makes [`RING_JWT_PROVIDER`] the process-wide default of
//! `jsonwebtoken`; call it before the first `jsonwebtoken::decode` or `encode` (doing so twice is fine).
//! [`JwtSigningKey`] mints tokens from PKCS#8 keys, for tests and for anything that later issues JWTs.

use std::fmt;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtLibError, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};

use crate::CryptoError;

/// The `jsonwebtoken` crypto provider backed by ring: `RS256`, `ES256` and `EdDSA` only.
pub static RING_JWT_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_component_from_private_key,
        compute_digest,
    },
};

/// Makes [`RING_JWT_PROVIDER`] the process-wide `jsonwebtoken` provider. Idempotent: a provider that is
/// already installed stays (in this workspace only this function installs one).
pub fn install_jwt_crypto_provider() {
    // `Err` only means a provider is already installed.
    let _ = RING_JWT_PROVIDER.install_default();
}

fn unsupported() -> JwtLibError {
    ErrorKind::UnsupportedAlgorithm.into()
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, JwtLibError> {
    let parsed = match (algorithm, key.family()) {
        (Algorithm::RS256, AlgorithmFamily::Rsa) => ParsedKeyPair::rsa(key.as_bytes()),
        (Algorithm::ES256, AlgorithmFamily::Ec) => ParsedKeyPair::p256(key.as_bytes()),
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => ParsedKeyPair::ed25519(key.as_bytes()),
        (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, _) => {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        _ => return Err(unsupported()),
    };
    let parsed = parsed.map_err(|_| JwtLibError::from(ErrorKind::InvalidKeyFormat))?;
    Ok(Box::new(RingSigner(parsed)))
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, JwtLibError> {
    let verifier = match (algorithm, key.family(), key.kind()) {
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            RingVerifier::RsaComponents { n: n.clone(), e: e.clone() }
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            RingVerifier::RsaDer(der.clone())
        }
        (Algorithm::ES256, AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            // An uncompressed P-256 point: 0x04 || x || y.
            if point.len() != 65 || point[0] != 0x04 {
                return Err(ErrorKind::InvalidEcdsaKey.into());
            }
            RingVerifier::P256(point.clone())
        }
        (Algorithm::EdDSA, AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(public)) => {
            if public.len() != 32 {
                return Err(ErrorKind::InvalidEddsaKey.into());
            }
            RingVerifier::Ed25519(public.clone())
        }
        (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, _, _) => {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        _ => return Err(unsupported()),
    };
    Ok(Box::new(verifier))
}

/// A verifier for exactly one algorithm, holding public key bytes only.
enum RingVerifier {
    RsaComponents {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// PKCS#1 `RSAPublicKey` DER.
    RsaDer(Vec<u8>),
    /// Uncompressed point.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let result = match self {
            RingVerifier::RsaComponents { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
            }
            RingVerifier::RsaDer(der) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).verify(msg, sig)
            }
            RingVerifier::P256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(msg, sig)
            }
            RingVerifier::Ed25519(public) => UnparsedPublicKey::new(&ED25519, public).verify(msg, sig),
        };
        result.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        match self {
            RingVerifier::RsaComponents { .. } | RingVerifier::RsaDer(_) => Algorithm::RS256,
            RingVerifier::P256(_) => Algorithm::ES256,
            RingVerifier::Ed25519(_) => Algorithm::EdDSA,
        }
    }
}

/// A parsed private key of one of the three algorithms.
enum ParsedKeyPair {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl ParsedKeyPair {
    /// PKCS#8, or PKCS#1 `RSAPrivateKey` DER.
    fn rsa(der: &[u8]) -> Result<ParsedKeyPair, CryptoError> {
        RsaKeyPair::from_pkcs8(der)
            .or_else(|_| RsaKeyPair::from_der(der))
            .map(ParsedKeyPair::Rsa)
            .map_err(|e| CryptoError::InvalidKey(format!("not a usable RSA private key: {e}")))
    }

    fn p256(pkcs8: &[u8]) -> Result<ParsedKeyPair, CryptoError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map(ParsedKeyPair::P256)
            .map_err(|e| CryptoError::InvalidKey(format!("not a P-256 PKCS#8 private key: {e}")))
    }

    fn ed25519(pkcs8: &[u8]) -> Result<ParsedKeyPair, CryptoError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map(ParsedKeyPair::Ed25519)
            .map_err(|e| CryptoError::InvalidKey(format!("not an Ed25519 PKCS#8 private key: {e}")))
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            ParsedKeyPair::Rsa(_) => Algorithm::RS256,
            ParsedKeyPair::P256(_) => Algorithm::ES256,
            ParsedKeyPair::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match self {
            ParsedKeyPair::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut out).map_err(|_| CryptoError::Random)?;
                Ok(out)
            }
            ParsedKeyPair::P256(key) => {
                Ok(key.sign(&rng, msg).map_err(|_| CryptoError::Random)?.as_ref().to_vec())
            }
            ParsedKeyPair::Ed25519(key) => Ok(key.sign(msg).as_ref().to_vec()),
        }
    }
}

struct RingSigner(ParsedKeyPair);

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0.sign(msg).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtLibError> {
    match ParsedKeyPair::rsa(der) {
        Ok(ParsedKeyPair::Rsa(key)) => Ok(rsa_public_components(&key)),
        _ => Err(ErrorKind::InvalidRsaKey("not a usable RSA private key".into()).into()),
    }
}

fn rsa_public_components(key: &RsaKeyPair) -> (Vec<u8>, Vec<u8>) {
    let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
    (components.n, components.e)
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey` DER (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JwtLibError> {
    let invalid = || JwtLibError::from(ErrorKind::InvalidRsaKey("not a PKCS#1 RSA public key".into()));
    let (body, rest) = der_element(der, 0x30).ok_or_else(invalid)?;
    if !rest.is_empty() {
        return Err(invalid());
    }
    let (n, body) = der_element(body, 0x02).ok_or_else(invalid)?;
    let (e, body) = der_element(body, 0x02).ok_or_else(invalid)?;
    if !body.is_empty() {
        return Err(invalid());
    }
    let strip = |v: &[u8]| v.iter().position(|&b| b != 0).map_or_else(Vec::new, |i| v[i..].to_vec());
    Ok((strip(n), strip(e)))
}

/// One DER element of the given tag: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, input) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, mut input) = input.split_first()?;
    let len = if len_byte < 0x80 {
        usize::from(len_byte)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (len_bytes, rest) = input.split_at(count);
        input = rest;
        len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    (input.len() >= len).then(|| input.split_at(len))
}

fn ec_components_from_private_key(
    der: &[u8],
    algorithm: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), JwtLibError> {
    if algorithm != Algorithm::ES256 {
        return Err(unsupported());
    }
    match ParsedKeyPair::p256(der) {
        Ok(ParsedKeyPair::P256(key)) => {
            let point = key.public_key().as_ref();
            Ok((EllipticCurve::P256, point[1..33].to_vec(), point[33..65].to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_component_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, JwtLibError> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(unsupported());
    }
    match ParsedKeyPair::ed25519(der) {
        Ok(ParsedKeyPair::Ed25519(key)) => Ok(key.public_key().as_ref().to_vec()),
        _ => Err(ErrorKind::InvalidEddsaKey.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, JwtLibError> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

/// A private key that signs JWTs with ring: `RS256` from an RSA PKCS#8 key (ring cannot generate
/// those), `ES256` and `EdDSA` from PKCS#8 keys or freshly generated ones. Prints `[redacted]`; the
/// PKCS#8 bytes it keeps zeroize on drop.
pub struct JwtSigningKey {
    key: ParsedKeyPair,
    encoding_key: EncodingKey,
}

impl fmt::Debug for JwtSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigningKey").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

impl JwtSigningKey {
    /// An `RS256` key from PKCS#8 (or PKCS#1) DER; at least 2048 bits.
    pub fn rs256_from_der(der: &[u8]) -> Result<JwtSigningKey, CryptoError> {
        Ok(JwtSigningKey { key: ParsedKeyPair::rsa(der)?, encoding_key: EncodingKey::from_rsa_der(der) })
    }

    /// An `ES256` key from P-256 PKCS#8 DER.
    pub fn es256_from_pkcs8(pkcs8: &[u8]) -> Result<JwtSigningKey, CryptoError> {
        Ok(JwtSigningKey { key: ParsedKeyPair::p256(pkcs8)?, encoding_key: EncodingKey::from_ec_der(pkcs8) })
    }

    /// An `EdDSA` key from Ed25519 PKCS#8 DER (v1 or v2).
    pub fn ed25519_from_pkcs8(pkcs8: &[u8]) -> Result<JwtSigningKey, CryptoError> {
        Ok(JwtSigningKey {
            key: ParsedKeyPair::ed25519(pkcs8)?,
            encoding_key: EncodingKey::from_ed_der(pkcs8),
        })
    }

    /// A new random `ES256` key.
    pub fn generate_es256() -> Result<JwtSigningKey, CryptoError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| CryptoError::Random)?;
        JwtSigningKey::es256_from_pkcs8(pkcs8.as_ref())
    }

    /// A new random `EdDSA` (Ed25519) key.
    pub fn generate_ed25519() -> Result<JwtSigningKey, CryptoError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| CryptoError::Random)?;
        JwtSigningKey::ed25519_from_pkcs8(pkcs8.as_ref())
    }

    /// `RS256`, `ES256` or `EdDSA`.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The key as `jsonwebtoken` takes it (signing goes through [`RING_JWT_PROVIDER`]).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding_key
    }

    /// The public half as a JWK (`kty`, `kid`, `alg`, `use: sig` and `n`/`e`, or `crv` and `x`/`y`, or
    /// `crv` and `x`), ready for a JWKS `keys` array.
    pub fn public_jwk(&self, kid: &str) -> serde_json::Value {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        match &self.key {
            ParsedKeyPair::Rsa(key) => {
                let (n, e) = rsa_public_components(key);
                serde_json::json!({
                    "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(&n), "e": b64(&e),
                })
            }
            ParsedKeyPair::P256(key) => {
                let point = key.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
            ParsedKeyPair::Ed25519(key) => serde_json::json!({
                "kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
                "x": b64(key.public_key().as_ref()),
            }),
        }
    }

    /// The public key as ring serialises it: PKCS#1 `RSAPublicKey` DER, the uncompressed P-256 point,
    /// or the 32 Ed25519 bytes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.key {
            ParsedKeyPair::Rsa(key) => key.public().as_ref().to_vec(),
            ParsedKeyPair::P256(key) => key.public_key().as_ref().to_vec(),
            ParsedKeyPair::Ed25519(key) => key.public_key().as_ref().to_vec(),
        }
    }

    /// The raw JWS signature of `message` (`base64url(header) "." base64url(claims)`), for callers that
    /// build the compact form themselves.
    pub fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key.sign(message)
    }

    /// A compact JWT of `claims` under `header`, through `jsonwebtoken` and [`RING_JWT_PROVIDER`]
    /// (installed first if it is not yet). `header.alg` must be this key's algorithm.
    pub fn sign<T: serde::Serialize>(&self, header: &Header, claims: &T) -> Result<String, CryptoError> {
        if header.alg != self.algorithm() {
            return Err(CryptoError::InvalidKey(format!(
                "a {:?} key cannot sign a {:?} token",
                self.algorithm(),
                header.alg
            )));
        }
        install_jwt_crypto_provider();
        jsonwebtoken::encode(header, claims, &self.encoding_key)
            .map_err(|e| CryptoError::InvalidKey(format!("signing the token failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<JwtSigningKey> {
        vec![JwtSigningKey::generate_es256().unwrap(), JwtSigningKey::generate_ed25519().unwrap()]
    }

    fn decoding_key(jwk: &serde_json::Value) -> DecodingKey {
        let s = |k: &str| jwk[k].as_str().unwrap().to_owned();
        match jwk["kty"].as_str().unwrap() {
            "RSA" => DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
            "EC" => DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap(),
            _ => DecodingKey::from_ed_components(&s("x")).unwrap(),
        }
    }

    #[test]
    fn signs_and_verifies_through_jsonwebtoken() {
        install_jwt_crypto_provider();
        install_jwt_crypto_provider();
        for key in keys() {
            let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
            let token = key.sign(&Header::new(key.algorithm()), &claims).unwrap();
            let mut validation = jsonwebtoken::Validation::new(key.algorithm());
            validation.validate_aud = false;
            let dk = decoding_key(&key.public_jwk("k"));
            let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &validation).unwrap();
            assert_eq!(data.claims["sub"], "x");

            // A flipped bit in the signature fails.
            let mut bad = token.clone().into_bytes();
            let last = bad.len() - 3;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert!(jsonwebtoken::decode::<serde_json::Value>(&bad, &dk, &validation).is_err());
        }
    }

    #[test]
    fn refuses_hmac_and_unknown_algorithms_and_wrong_families() {
        let secret = DecodingKey::from_secret(b"secret");
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(new_verifier(&alg, &secret).is_err());
            assert!(new_signer(&alg, &EncodingKey::from_secret(b"secret")).is_err());
        }
        let ec = JwtSigningKey::generate_es256().unwrap();
        let ec_key = decoding_key(&ec.public_jwk("k"));
        for alg in [Algorithm::RS256, Algorithm::EdDSA, Algorithm::ES384, Algorithm::PS256, Algorithm::HS256]
        {
            assert!(new_verifier(&alg, &ec_key).is_err(), "{alg:?}");
        }
        assert!(new_verifier(&Algorithm::ES256, &ec_key).is_ok());
        assert!(new_signer(&Algorithm::ES384, ec.encoding_key()).is_err());
        assert!(new_signer(&Algorithm::EdDSA, ec.encoding_key()).is_err());
        assert!(ec.sign(&Header::new(Algorithm::EdDSA), &serde_json::json!({})).is_err());
    }

    #[test]
    fn key_utils_agree_with_the_public_keys() {
        let ec = JwtSigningKey::generate_es256().unwrap();
        let (curve, x, y) =
            ec_components_from_private_key(ec.encoding_key().as_bytes(), Algorithm::ES256).unwrap();
        assert_eq!(curve, EllipticCurve::P256);
        assert_eq!([&[4u8][..], &x, &y].concat(), ec.public_key_bytes());
        let ed = JwtSigningKey::generate_ed25519().unwrap();
        let x = ed_component_from_private_key(ed.encoding_key().as_bytes(), &EllipticCurve::Ed25519).unwrap();
        assert_eq!(x, ed.public_key_bytes());
        assert_eq!(compute_digest(b"abc", ThumbprintHash::SHA256).unwrap().len(), 32);
    }

    #[test]
    fn parses_pkcs1_public_keys() {
        // SEQUENCE { INTEGER 0x00c5 (leading zero stripped), INTEGER 65537 }
        let der = [0x30, 0x09, 0x02, 0x02, 0x00, 0xc5, 0x02, 0x03, 0x01, 0x00, 0x01];
        assert_eq!(rsa_components_from_public_key(&der).unwrap(), (vec![0xc5], vec![1, 0, 1]));
        assert!(rsa_components_from_public_key(&der[..10]).is_err());
        assert!(rsa_components_from_public_key(&[0x30, 0x81]).is_err());
    }
}
