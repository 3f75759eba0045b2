//! Benchmark helper: makes an ES256 issuer key, writes its JWKS and one signed token.
//!
//! `cargo run -p scaivault-e2e --example mint-jwt -- DIR ISSUER SUBJECT SCOPES`
//! writes `DIR/jwks.json` and `DIR/token` (valid for one hour, audience `scaivault`).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use scaivault_crypto::JwtSigningKey;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, issuer, subject, scopes] = args.as_slice() else {
        anyhow::bail!("usage: mint-jwt DIR ISSUER SUBJECT SCOPES");
    };
    let key = JwtSigningKey::generate_es256()?;
    std::fs::write(format!("{dir}/jwks.json"), json!({"keys": [key.public_jwk("bench")]}).to_string())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(key.algorithm());
    header.kid = Some("bench".into());
    let claims = json!({"iss": issuer, "aud": "scaivault", "sub": subject, "scope": scopes, "iat": now, "exp": now + 3600});
    std::fs::write(format!("{dir}/token"), key.sign(&header, &claims)?)?;
    Ok(())
}
