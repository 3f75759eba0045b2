//! Webhook signatures: every delivery is signed twice, once per scheme, so a receiver can use either
//! the ScaiVault scheme (SPEC §7, a few lines of any language) or an off-the-shelf Standard Webhooks
//! library (<https://www.standardwebhooks.com>).
//!
//! - ScaiVault: `X-ScaiVault-Timestamp: <unix seconds>` and
//!   `X-ScaiVault-Signature: sha256=<lowercase hex HMAC-SHA256(secret, "{timestamp}." + body)>`, where
//!   the key is the UTF-8 bytes of the webhook secret exactly as configured (a Python receiver does
//!   `os.environ["SECRET"].encode()`, `whsec_` prefix included).
//! - Standard Webhooks: `webhook-id` (the event id), `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The key follows the
//!   Standard Webhooks convention: for a `whsec_…` secret it is the base64 decoding of the rest (what
//!   the libraries do); for any other secret it is the raw UTF-8 bytes of the secret, so a receiver using
//!   a Standard Webhooks library passes `"whsec_" + base64(secret)` as its secret.
//!
//! While a secret is being rolled, each header carries one signature per secret, space-separated, the
//! current secret first; a receiver accepts the delivery when any of them verifies, so it can switch
//! its secret at any moment of the overlap.
//!
//! Both verifiers bound the timestamp (replays of old deliveries are refused) and compare in constant
//! time. Their errors never include the secret or a signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use scaivault_crypto::{CryptoError, hmac_sha256, random_bytes, verify_hmac_sha256};
use thiserror::Error;

use crate::hex;

/// How far a delivery's timestamp may be from the receiver's clock, either way (5 minutes, as in the
/// Standard Webhooks libraries).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Generated secrets start with this, as Standard Webhooks secrets do.
const WHSEC_PREFIX: &str = "whsec_";
const SCAIVAULT_PREFIX: &str = "sha256=";
const STANDARD_PREFIX: &str = "v1,";

/// Why a delivery did not verify. The messages name the header at most, never a secret or signature.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("missing or empty header {0}")]
    MissingHeader(&'static str),
    #[error("the timestamp is outside the allowed tolerance (stale or in the future)")]
    StaleTimestamp,
    #[error("the timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("the signature header is not in the expected format")]
    BadSignatureFormat,
    #[error("no signature matches")]
    Mismatch,
}

/// A new webhook secret: `whsec_` + base64 of 32 random bytes (256 bits), shown to the user once.
pub fn generate_webhook_secret() -> Result<String, CryptoError> {
    Ok(format!("{WHSEC_PREFIX}{}", STANDARD.encode(random_bytes(32)?)))
}

/// The Standard Webhooks signing key of a secret: the base64 decoding of what follows `whsec_`, or,
/// when there is no such prefix or the rest is not base64, the secret's raw UTF-8 bytes (so a
/// user-chosen secret still works; such a receiver passes `"whsec_" + base64(secret)` to its library).
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(WHSEC_PREFIX)
        .and_then(|rest| STANDARD.decode(rest).ok())
        .filter(|key| !key.is_empty())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The headers of one delivery attempt, in a fixed order: content type, the ScaiVault headers, then the
/// Standard Webhooks ones.
///
/// `secrets` is the current secret first, then older ones still within their roll overlap; each yields
/// one signature per scheme. With no secret at all the signature headers are left out (receivers then
/// refuse the delivery as unsigned rather than trusting an empty signature).
pub fn sign_delivery(
    secrets: &[&str],
    event_id: &str,
    event_type: &str,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = timestamp.to_string();
    let scaivault = secrets
        .iter()
        .map(|s| {
            let mac = hmac_sha256(s.as_bytes(), &[ts.as_bytes(), b".", body]);
            format!("{SCAIVAULT_PREFIX}{}", hex::encode(&mac))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let standard = secrets
        .iter()
        .map(|s| {
            let mac = hmac_sha256(&standard_key(s), &[event_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            format!("{STANDARD_PREFIX}{}", STANDARD.encode(mac))
        })
        .collect::<Vec<_>>()
        .join(" ");

    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-ScaiVault-Event-Id", event_id.to_owned()),
        ("X-ScaiVault-Event-Type", event_type.to_owned()),
        ("X-ScaiVault-Delivery-Id", delivery_id.to_owned()),
        ("X-ScaiVault-Timestamp", ts.clone()),
    ];
    if !secrets.is_empty() {
        headers.push(("X-ScaiVault-Signature", scaivault));
    }
    headers.push(("webhook-id", event_id.to_owned()));
    headers.push(("webhook-timestamp", ts));
    if !secrets.is_empty() {
        headers.push(("webhook-signature", standard));
    }
    headers
}

/// Parses a Unix-seconds header and checks it is within `tolerance_secs` of `now_unix`.
fn check_timestamp(
    name: &'static str,
    header: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if header.is_empty() {
        return Err(VerifyError::MissingHeader(name));
    }
    // Digits only: `+5` or ` 5` would parse or be trimmed, yet differ from what was signed.
    if !header.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let ts: i64 = header.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    if now_unix.abs_diff(ts) > tolerance {
        return Err(VerifyError::StaleTimestamp);
    }
    Ok(())
}

/// Checks each `prefix`-tagged signature in a space-separated header with `matches`; entries with
/// another prefix (a future scheme version) are skipped.
///
/// Accepts when any well-formed entry matches. Otherwise reports `Mismatch` when there was at least one
/// well-formed entry, else `BadSignatureFormat`.
fn check_signatures(
    name: &'static str,
    header: &str,
    prefix: &str,
    decode: impl Fn(&str) -> Option<Vec<u8>>,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<(), VerifyError> {
    if header.trim().is_empty() {
        return Err(VerifyError::MissingHeader(name));
    }
    let mut well_formed = false;
    for entry in header.split(' ').filter(|e| !e.is_empty()) {
        let Some(encoded) = entry.strip_prefix(prefix) else { continue };
        let Some(tag) = decode(encoded).filter(|t| t.len() == 32) else { continue };
        well_formed = true;
        if matches(&tag) {
            return Ok(());
        }
    }
    Err(if well_formed { VerifyError::Mismatch } else { VerifyError::BadSignatureFormat })
}

/// Verifies a delivery signed with the ScaiVault scheme (`X-ScaiVault-Timestamp`,
/// `X-ScaiVault-Signature`); this is the check a receiver makes, and the one our tests and
/// documentation show.
pub fn verify_scaivault(
    secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    check_timestamp("X-ScaiVault-Timestamp", timestamp_header, now_unix, tolerance_secs)?;
    check_signatures("X-ScaiVault-Signature", signature_header, SCAIVAULT_PREFIX, hex::decode, |tag| {
        verify_hmac_sha256(secret.as_bytes(), &[timestamp_header.as_bytes(), b".", body], tag)
    })
}

/// Verifies a delivery signed with the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`); `secret` is the webhook secret as configured, keyed as [`standard_key`] says.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if id.is_empty() {
        return Err(VerifyError::MissingHeader("webhook-id"));
    }
    check_timestamp("webhook-timestamp", timestamp, now_unix, tolerance_secs)?;
    let key = standard_key(secret);
    check_signatures(
        "webhook-signature",
        signature_header,
        STANDARD_PREFIX,
        |b64| STANDARD.decode(b64).ok(),
        |tag| verify_hmac_sha256(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body], tag),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"event_id":"evt_1","event_type":"webhook.test"}"#;

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> &'a str {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap()
    }

    fn verify_both(secret: &str, headers: &[(&'static str, String)], body: &[u8], now: i64) -> [bool; 2] {
        [
            verify_scaivault(
                secret,
                header(headers, "X-ScaiVault-Timestamp"),
                header(headers, "X-ScaiVault-Signature"),
                body,
                now,
                DEFAULT_TOLERANCE_SECS,
            )
            .is_ok(),
            verify_standard(
                secret,
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
                body,
                now,
                DEFAULT_TOLERANCE_SECS,
            )
            .is_ok(),
        ]
    }

    #[test]
    fn headers_are_complete_and_ordered() {
        let h = sign_delivery(&["s"], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        let names: Vec<&str> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "X-ScaiVault-Event-Id",
                "X-ScaiVault-Event-Type",
                "X-ScaiVault-Delivery-Id",
                "X-ScaiVault-Timestamp",
                "X-ScaiVault-Signature",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
            ]
        );
        assert_eq!(header(&h, "Content-Type"), "application/json");
        assert_eq!(header(&h, "X-ScaiVault-Event-Id"), "evt_1");
        assert_eq!(header(&h, "webhook-id"), "evt_1");
        assert_eq!(header(&h, "X-ScaiVault-Event-Type"), "webhook.test");
        assert_eq!(header(&h, "X-ScaiVault-Delivery-Id"), "dlv_1");
        assert_eq!(header(&h, "X-ScaiVault-Timestamp"), "1700000000");
        assert_eq!(header(&h, "webhook-timestamp"), "1700000000");
        let unsigned = sign_delivery(&[], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        assert!(unsigned.iter().all(|(n, _)| !n.ends_with("ignature")));
    }

    #[test]
    fn round_trip_with_plain_and_generated_secrets() {
        let generated = generate_webhook_secret().unwrap();
        for secret in ["my-webhook-secret", generated.as_str()] {
            let h = sign_delivery(&[secret], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
            assert_eq!(verify_both(secret, &h, BODY, NOW), [true, true]);
            assert_eq!(verify_both(secret, &h, BODY, NOW + 300), [true, true]);
            assert_eq!(verify_both(secret, &h, BODY, NOW - 300), [true, true]);
            assert_eq!(verify_both("other", &h, BODY, NOW), [false, false]);
        }
    }

    #[test]
    fn generated_secrets_are_whsec_base64_of_32_bytes() {
        let a = generate_webhook_secret().unwrap();
        assert!(a.starts_with("whsec_"));
        assert_eq!(standard_key(&a).len(), 32);
        assert_ne!(a, generate_webhook_secret().unwrap());
    }

    #[test]
    fn standard_key_falls_back_to_raw_bytes() {
        assert_eq!(standard_key("plain"), b"plain");
        assert_eq!(standard_key("whsec_not base64!"), b"whsec_not base64!");
        assert_eq!(standard_key("whsec_"), b"whsec_");
        assert_eq!(standard_key("whsec_AAEC"), [0u8, 1, 2]);
    }

    #[test]
    fn a_roll_verifies_with_either_secret() {
        let h = sign_delivery(&["new-secret", "old-secret"], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        assert_eq!(header(&h, "X-ScaiVault-Signature").split(' ').count(), 2);
        assert_eq!(header(&h, "webhook-signature").split(' ').count(), 2);
        assert!(header(&h, "X-ScaiVault-Signature").split(' ').all(|s| s.starts_with("sha256=")));
        assert!(header(&h, "webhook-signature").split(' ').all(|s| s.starts_with("v1,")));
        assert_eq!(verify_both("new-secret", &h, BODY, NOW), [true, true]);
        assert_eq!(verify_both("old-secret", &h, BODY, NOW), [true, true]);
        assert_eq!(verify_both("older-secret", &h, BODY, NOW), [false, false]);
    }

    #[test]
    fn tampering_and_stale_timestamps_fail() {
        let h = sign_delivery(&["s"], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        assert_eq!(verify_both("s", &h, b"{}", NOW), [false, false]);
        assert_eq!(verify_both("s", &h, BODY, NOW + 301), [false, false]);
        assert_eq!(verify_both("s", &h, BODY, NOW - 301), [false, false]);
        let sig = header(&h, "X-ScaiVault-Signature");
        let stale = verify_scaivault("s", "1700000000", sig, BODY, NOW + 301, 300);
        assert_eq!(stale, Err(VerifyError::StaleTimestamp));
        // The timestamp is signed: moving it forward to pass the window breaks the signature.
        assert_eq!(
            verify_scaivault("s", "1700000301", sig, BODY, NOW + 301, 300),
            Err(VerifyError::Mismatch)
        );
        let std_sig = header(&h, "webhook-signature");
        assert_eq!(
            verify_standard("s", "evt_2", "1700000000", std_sig, BODY, NOW, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_standard("s", "evt_1", "1699999000", std_sig, BODY, NOW, 300),
            Err(VerifyError::StaleTimestamp)
        );
    }

    #[test]
    fn malformed_headers_are_refused_with_the_right_error() {
        let good =
            header(&sign_delivery(&["s"], "e", "t", "d", NOW, BODY), "X-ScaiVault-Signature").to_owned();
        let bare = good.trim_start_matches("sha256=").to_owned();
        let check = |ts: &str, sig: &str| verify_scaivault("s", ts, sig, BODY, NOW, 300);
        assert_eq!(check("1700000000", &good), Ok(()));
        assert_eq!(check("", &good), Err(VerifyError::MissingHeader("X-ScaiVault-Timestamp")));
        assert_eq!(check("1700000000", ""), Err(VerifyError::MissingHeader("X-ScaiVault-Signature")));
        assert_eq!(check("abc", &good), Err(VerifyError::BadTimestamp));
        assert_eq!(check("+1700000000", &good), Err(VerifyError::BadTimestamp));
        assert_eq!(check("-1", &good), Err(VerifyError::BadTimestamp));
        assert_eq!(check("99999999999999999999", &good), Err(VerifyError::BadTimestamp));
        assert_eq!(check("1700000000", &bare), Err(VerifyError::BadSignatureFormat));
        assert_eq!(check("1700000000", "sha256=zz"), Err(VerifyError::BadSignatureFormat));
        assert_eq!(check("1700000000", "sha256=abcd"), Err(VerifyError::BadSignatureFormat));
        assert_eq!(check("1700000000", &format!("v9=xyz {good}")), Ok(()));
        assert_eq!(check("1700000000", &format!("sha256=zz {good}")), Ok(()));
        assert_eq!(check("1700000000", &format!("sha256={}", "0".repeat(64))), Err(VerifyError::Mismatch));
        assert_eq!(check("1700000000", &good.to_uppercase().replace("SHA256=", "sha256=")), Ok(()));
        assert_eq!(
            verify_standard("s", "", "1700000000", "v1,AAAA", BODY, NOW, 300),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify_standard("s", "e", "1700000000", "v1,!!!", BODY, NOW, 300),
            Err(VerifyError::BadSignatureFormat)
        );
        assert_eq!(
            verify_standard("s", "e", "1700000000", "v1a,abc", BODY, NOW, 300),
            Err(VerifyError::BadSignatureFormat)
        );
    }

    #[test]
    fn errors_never_echo_secret_or_signature() {
        let h = sign_delivery(&["topsecret"], "e", "t", "d", NOW, BODY);
        let sig = header(&h, "X-ScaiVault-Signature");
        let errors = [
            verify_scaivault("topsecret", "1700000000", sig, b"x", NOW, 300).unwrap_err(),
            verify_scaivault("topsecret", "1", sig, BODY, NOW, 300).unwrap_err(),
            verify_scaivault("topsecret", "1700000000", &sig[7..], BODY, NOW, 300).unwrap_err(),
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.contains("topsecret") && !msg.contains(&sig[7..20]), "{msg}");
        }
    }

    /// Computed independently with Python's `hmac` module:
    /// `hmac.new(b"my-webhook-secret", b"1700000000." + body, sha256).hexdigest()`.
    #[test]
    fn scaivault_fixed_vector() {
        let h = sign_delivery(&["my-webhook-secret"], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        let expected = "sha256=80757794c9627e1686d1f91b26d7658e922f74fbe1fcbe4a96d4686569432f1f";
        assert_eq!(header(&h, "X-ScaiVault-Signature"), expected);
        assert_eq!(verify_scaivault("my-webhook-secret", "1700000000", expected, BODY, NOW, 300), Ok(()));
    }

    /// The example of the Standard Webhooks reference libraries' tests (a `whsec_` secret), and a raw
    /// secret computed with Python: `base64(hmac.new(b"my-webhook-secret", b"evt_1.1700000000." + body))`.
    #[test]
    fn standard_fixed_vectors() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        let h = sign_delivery(&[secret], id, "webhook.test", "dlv_1", ts, body);
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(header(&h, "webhook-signature"), expected);
        assert_eq!(verify_standard(secret, id, "1614265330", expected, body, ts, 300), Ok(()));

        let h = sign_delivery(&["my-webhook-secret"], "evt_1", "webhook.test", "dlv_1", NOW, BODY);
        assert_eq!(header(&h, "webhook-signature"), "v1,+HNfkZWTGPyZG3nZVFRshIU2HLT2g1lOgqJe3Wr8cAU=");
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let h = sign_delivery(&["k", "old"], "evt_1", "secret.updated", "dlv_1", NOW, &body);
            prop_assert_eq!(verify_both("k", &h, &body, NOW), [true, true]);
            let mut tampered = body.clone();
            let i = index.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert_eq!(verify_both("k", &h, &tampered, NOW), [false, false]);
            prop_assert_eq!(verify_both("old", &h, &tampered, NOW), [false, false]);
        }
    }
}
