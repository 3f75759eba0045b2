//! JWT verification against an issuer's JWKS served over real HTTP on loopback (wiremock): what is
//! accepted, every refusal the contract names, key rotation, JWKS outages, unknown-`kid` floods and the
//! verified-token cache. Time is a `ManualClock`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::Header;
use scaivault_core::{Clock, JwtError, JwtIdentity, JwtIssuer, JwtVerifier, ManualClock};
use scaivault_crypto::{JwtSigningKey, hash_token};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ISS: &str = "https://idp.example.test";
const AUD: &str = "scaivault";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM base64")
}

fn rsa_key() -> JwtSigningKey {
    JwtSigningKey::rs256_from_der(&pem_to_der(&fixture("rsa2048-test-key.pem"))).expect("RSA fixture key")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from any header and claims JSON, signed by `key` (the header is not checked).
fn mint_raw(key: &JwtSigningKey, header: &Value, claims: &Value) -> String {
    mint_text(key, &header.to_string(), &claims.to_string())
}

/// A token from header and payload text exactly as given.
fn mint_text(key: &JwtSigningKey, header: &str, payload: &str) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = key.sign_message(message.as_bytes()).expect("sign");
    format!("{message}.{}", b64(&signature))
}

/// A token through jsonwebtoken's encoder and the ring provider.
fn mint(key: &JwtSigningKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm());
    header.kid = Some(kid.to_owned());
    key.sign(&header, claims).expect("sign")
}

fn alg_name(key: &JwtSigningKey) -> &'static str {
    match key.algorithm() {
        jsonwebtoken::Algorithm::RS256 => "RS256",
        jsonwebtoken::Algorithm::ES256 => "ES256",
        _ => "EdDSA",
    }
}

/// HMAC-SHA-256 (RFC 2104) over the crate's SHA-256, to forge key-confusion tokens.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&hash_token(key).0);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).chain(message.iter().copied()).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).chain(hash_token(&inner).0).collect();
    hash_token(&outer).0
}

/// What the fake issuer serves at `/jwks.json`.
struct IdpState {
    keys: Vec<Value>,
    status: u16,
    delay: Duration,
    padding: usize,
}

struct JwksResponder(Arc<Mutex<IdpState>>);

impl Respond for JwksResponder {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let state = self.0.lock().unwrap();
        let mut body = json!({"keys": state.keys});
        if state.padding > 0 {
            body["padding"] = Value::String("x".repeat(state.padding));
        }
        ResponseTemplate::new(state.status).set_body_json(body).set_delay(state.delay)
    }
}

struct Idp {
    server: MockServer,
    state: Arc<Mutex<IdpState>>,
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Idp {
        // A server of its own (not pooled), so that dropping it really stops it.
        let server = MockServer::builder().start().await;
        let state = Arc::new(Mutex::new(IdpState { keys, status: 200, delay: Duration::ZERO, padding: 0 }));
        Mock::given(method("GET"))
            .and(path("/jwks.json"))
            .respond_with(JwksResponder(state.clone()))
            .mount(&server)
            .await;
        Idp { server, state }
    }

    fn url(&self) -> String {
        format!("{}/jwks.json", self.server.uri())
    }

    fn set_keys(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().keys = keys;
    }

    fn set_status(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }

    async fn fetches(&self) -> usize {
        self.server.received_requests().await.expect("request recording").len()
    }
}

struct Setup {
    idp: Idp,
    clock: Arc<ManualClock>,
    verifier: Arc<JwtVerifier>,
    rsa: JwtSigningKey,
    ec: JwtSigningKey,
    ed: JwtSigningKey,
}

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).unwrap()
}

fn verifier_for(url: String, audience: Option<&str>, clock: &Arc<ManualClock>) -> Arc<JwtVerifier> {
    let issuer = JwtIssuer { issuer: ISS.into(), jwks_url: url, audience: audience.map(str::to_owned) };
    Arc::new(JwtVerifier::new(vec![issuer], clock.clone()).expect("verifier"))
}

async fn setup() -> Setup {
    let (rsa, ec, ed) =
        (rsa_key(), JwtSigningKey::generate_es256().unwrap(), JwtSigningKey::generate_ed25519().unwrap());
    let idp = Idp::start(vec![rsa.public_jwk("rsa-1"), ec.public_jwk("ec-1"), ed.public_jwk("ed-1")]).await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let verifier = verifier_for(idp.url(), Some(AUD), &clock);
    Setup { idp, clock, verifier, rsa, ec, ed }
}

impl Setup {
    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn claims(&self) -> Value {
        let now = self.now();
        json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "nbf": now, "exp": now + 3600})
    }

    fn with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    async fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        self.verifier.verify(token).await
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(TimeDelta::seconds(secs));
    }
}

#[test]
fn the_test_hmac_is_rfc_4231() {
    let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

#[tokio::test]
async fn accepts_rs256_es256_and_eddsa_tokens() {
    let s = setup().await;
    for (key, kid) in [(&s.rsa, "rsa-1"), (&s.ec, "ec-1"), (&s.ed, "ed-1")] {
        let token = mint(key, kid, &s.claims());
        let identity = s.verify(&token).await.unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(identity.issuer, ISS);
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.identity_type, "user");
        assert_eq!(identity.expires_at.timestamp(), s.now() + 3600);
        assert_eq!(identity.token_hash, hash_token(token.as_bytes()).0);
        // The same through the raw path (our own header JSON).
        let raw = mint_raw(key, &json!({"alg": alg_name(key), "kid": kid, "typ": "JWT"}), &s.claims());
        s.verify(&raw).await.unwrap_or_else(|e| panic!("{kid} raw: {e}"));
    }
    assert_eq!(s.idp.fetches().await, 1, "one JWKS fetch serves all three keys");
}

#[tokio::test]
async fn maps_claims() {
    let s = setup().await;
    let token = mint(
        &s.ed,
        "ed-1",
        &s.with(json!({
            "sub": "sa:deployer",
            "tenant_id": "tnt_a",
            "partner_id": "ptn_b",
            "scope": "secrets:read  secrets:write secrets:read",
            "scp": ["ignored-when-scope-is-there"],
            "groups": ["ops", "dev"],
            "roles": ["partner_admin", "janitor", "system_admin", "partner_admin"],
        })),
    );
    let id = s.verify(&token).await.unwrap();
    assert_eq!(id.subject, "sa:deployer");
    assert_eq!(id.identity_type, "service_account");
    assert_eq!(id.tenant_id.as_deref(), Some("tnt_a"));
    assert_eq!(id.partner_id.as_deref(), Some("ptn_b"));
    assert_eq!(id.scopes, ["secrets:read", "secrets:write"]);
    assert_eq!(id.groups, ["ops", "dev"]);
    assert_eq!(id.roles, ["partner_admin", "system_admin"]);

    // An explicit identity_type wins over the `sa:` prefix; `scp` may be an array or a string.
    let token = mint(
        &s.ed,
        "ed-1",
        &s.with(json!({"sub": "sa:human", "identity_type": "user", "scp": ["a b", "c"]})),
    );
    let id = s.verify(&token).await.unwrap();
    assert_eq!(id.identity_type, "user");
    assert_eq!(id.scopes, ["a", "b", "c"]);
    assert!(id.groups.is_empty() && id.roles.is_empty() && id.tenant_id.is_none() && id.partner_id.is_none());
    let token = mint(&s.ed, "ed-1", &s.with(json!({"identity_type": "service_account", "scp": "x y"})));
    let id = s.verify(&token).await.unwrap();
    assert_eq!(
        (id.identity_type.as_str(), id.scopes),
        ("service_account", vec!["x".to_owned(), "y".to_owned()])
    );

    // Unknown identity types and mistyped claims are refused, naming the claim only.
    for (changes, expected) in [
        (json!({"identity_type": "group"}), JwtError::UnsupportedIdentityType),
        (json!({"identity_type": 7}), JwtError::InvalidClaim("identity_type")),
        (json!({"groups": "ops"}), JwtError::InvalidClaim("groups")),
        (json!({"groups": ["ops", 1]}), JwtError::InvalidClaim("groups")),
        (json!({"roles": "system_admin"}), JwtError::InvalidClaim("roles")),
        (json!({"scope": ["a"]}), JwtError::InvalidClaim("scope")),
        (json!({"scp": {"a": 1}}), JwtError::InvalidClaim("scp")),
        (json!({"tenant_id": 5}), JwtError::InvalidClaim("tenant_id")),
        (json!({"sub": null}), JwtError::MissingClaim("sub")),
        (json!({"sub": ""}), JwtError::InvalidClaim("sub")),
    ] {
        let token = mint(&s.ed, "ed-1", &s.with(changes.clone()));
        assert_eq!(s.verify(&token).await.unwrap_err(), expected, "{changes}");
    }
}

#[tokio::test]
async fn refuses_alg_none() {
    let s = setup().await;
    let claims = s.claims();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"});
        let unsigned =
            format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        assert_eq!(s.verify(&unsigned).await.unwrap_err(), JwtError::UnsupportedAlgorithm, "{alg}");
        // Even with a real RS256 signature attached.
        let signed = mint_raw(&s.rsa, &header, &claims);
        assert_eq!(s.verify(&signed).await.unwrap_err(), JwtError::UnsupportedAlgorithm, "{alg}");
    }
    let no_alg = mint_raw(&s.rsa, &json!({"kid": "rsa-1"}), &claims);
    assert_eq!(s.verify(&no_alg).await.unwrap_err(), JwtError::Malformed);
}

#[tokio::test]
async fn refuses_hmac_signed_with_the_issuers_public_key() {
    let s = setup().await;
    let pem = fixture("rsa2048-test-key.pub.pem");
    let spki_der = pem_to_der(&pem);
    let pkcs1_der = s.rsa.public_key_bytes();
    let claims = s.claims();
    for (what, secret) in [
        ("PEM", pem.as_bytes().to_vec()),
        ("PEM without newline", pem.trim_end().as_bytes().to_vec()),
        ("SPKI DER", spki_der),
        ("PKCS#1 DER", pkcs1_der),
    ] {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"});
            let message =
                format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
            let token = format!("{message}.{}", b64(&hmac_sha256(&secret, message.as_bytes())));
            assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::UnsupportedAlgorithm, "{what} {alg}");
        }
    }
    // Other algorithms the library knows are refused the same way.
    for alg in ["RS384", "RS512", "PS256", "ES384", "ES512", "Ed25519"] {
        let token = mint_raw(&s.rsa, &json!({"alg": alg, "kid": "rsa-1"}), &claims);
        assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::UnsupportedAlgorithm, "{alg}");
    }
}

#[tokio::test]
async fn exp_iss_and_aud_are_required_and_exp_is_an_integer() {
    let s = setup().await;
    let exp = s.now() + 3600;
    for (changes, expected) in [
        (json!({"exp": exp.to_string()}), JwtError::InvalidClaim("exp")),
        (json!({"exp": exp as f64 + 0.5}), JwtError::InvalidClaim("exp")),
        (json!({"exp": exp as f64}), JwtError::InvalidClaim("exp")),
        (json!({"exp": true}), JwtError::InvalidClaim("exp")),
        (json!({"exp": u64::MAX}), JwtError::InvalidClaim("exp")),
        (json!({"exp": null}), JwtError::MissingClaim("exp")),
        (json!({"nbf": "0"}), JwtError::InvalidClaim("nbf")),
        (json!({"nbf": 1.5}), JwtError::InvalidClaim("nbf")),
        (json!({"iss": null}), JwtError::MissingClaim("iss")),
        (json!({"iss": [ISS]}), JwtError::InvalidClaim("iss")),
        (json!({"aud": null}), JwtError::MissingClaim("aud")),
        (json!({"aud": []}), JwtError::InvalidClaim("aud")),
        (json!({"aud": 1}), JwtError::InvalidClaim("aud")),
        (json!({"aud": [AUD, 1]}), JwtError::InvalidClaim("aud")),
    ] {
        for (key, kid) in [(&s.rsa, "rsa-1"), (&s.ed, "ed-1")] {
            let token = mint(key, kid, &s.with(changes.clone()));
            assert_eq!(s.verify(&token).await.unwrap_err(), expected, "{kid} {changes}");
        }
    }
    // An array or object `exp` trips jsonwebtoken's own claim parser (which runs, though it checks
    // nothing here) before ours: refused all the same.
    for exp in [json!([exp]), json!({"n": exp})] {
        let token = mint(&s.ed, "ed-1", &s.with(json!({"exp": exp})));
        let error = s.verify(&token).await.unwrap_err();
        assert!(matches!(error, JwtError::Malformed | JwtError::InvalidClaim("exp")), "{error:?}");
    }
    // A float written in exponent form is not an integer either.
    let claims = s.claims().to_string().replace(&format!("\"exp\":{exp}"), "\"exp\":1.9e10");
    assert!(claims.contains("1.9e10"));
    let token = mint_text(&s.ed, r#"{"alg":"EdDSA","kid":"ed-1"}"#, &claims);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::InvalidClaim("exp"));
}

#[tokio::test]
async fn exp_and_nbf_have_sixty_seconds_of_leeway() {
    let s = setup().await;
    let now = s.now();
    let ok = |changes: Value| mint(&s.ec, "ec-1", &s.with(changes));
    s.verify(&ok(json!({"exp": now - 30}))).await.expect("expired by 30 s: within the leeway");
    s.verify(&ok(json!({"exp": now - 60}))).await.expect("expired by exactly 60 s");
    assert_eq!(s.verify(&ok(json!({"exp": now - 61}))).await.unwrap_err(), JwtError::Expired);
    assert_eq!(s.verify(&ok(json!({"exp": now - 86_400}))).await.unwrap_err(), JwtError::Expired);
    assert_eq!(s.verify(&ok(json!({"exp": -1}))).await.unwrap_err(), JwtError::Expired);
    s.verify(&ok(json!({"nbf": now + 30}))).await.expect("nbf 30 s ahead: within the leeway");
    assert_eq!(s.verify(&ok(json!({"nbf": now + 61}))).await.unwrap_err(), JwtError::NotYetValid);
    assert_eq!(s.verify(&ok(json!({"nbf": now + 3600}))).await.unwrap_err(), JwtError::NotYetValid);
    s.verify(&ok(json!({"nbf": null}))).await.expect("nbf is optional");

    // A token accepted now is refused once the clock passes exp + 60 s, cached or not.
    let token = ok(json!({"exp": now + 100}));
    s.verify(&token).await.unwrap();
    s.advance(159);
    s.verify(&token).await.expect("still within exp + leeway");
    s.advance(2);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::Expired);
}

#[tokio::test]
async fn refuses_wrong_issuer_and_audience() {
    let s = setup().await;
    for (changes, expected) in [
        (json!({"iss": "https://evil.example.test"}), JwtError::UnknownIssuer),
        (json!({"iss": format!("{ISS}/")}), JwtError::UnknownIssuer),
        (json!({"aud": "someone-else"}), JwtError::WrongAudience),
        (json!({"aud": ["someone-else", "another"]}), JwtError::WrongAudience),
        (json!({"aud": "SCAIVAULT"}), JwtError::WrongAudience),
    ] {
        let token = mint(&s.rsa, "rsa-1", &s.with(changes.clone()));
        assert_eq!(s.verify(&token).await.unwrap_err(), expected, "{changes}");
    }
    let token = mint(&s.rsa, "rsa-1", &s.with(json!({"aud": ["someone-else", AUD]})));
    s.verify(&token).await.expect("an audience array containing ours");
}

#[tokio::test]
async fn without_a_configured_audience_any_aud_is_accepted_but_one_is_required() {
    let s = setup().await;
    let verifier = verifier_for(s.idp.url(), None, &s.clock);
    for aud in [json!("anything"), json!(["a", "b"])] {
        let token = mint(&s.ed, "ed-1", &s.with(json!({"aud": aud})));
        verifier.verify(&token).await.expect("any audience");
    }
    let token = mint(&s.ed, "ed-1", &s.with(json!({"aud": null})));
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::MissingClaim("aud"));
}

#[tokio::test]
async fn refuses_a_signature_by_another_key_under_the_issuers_kid() {
    let s = setup().await;
    let other_rsa =
        JwtSigningKey::rs256_from_der(&pem_to_der(&fixture("rsa2048-other-test-key.pem"))).unwrap();
    let other_ec = JwtSigningKey::generate_es256().unwrap();
    let other_ed = JwtSigningKey::generate_ed25519().unwrap();
    for (key, kid) in [(&other_rsa, "rsa-1"), (&other_ec, "ec-1"), (&other_ed, "ed-1")] {
        let token = mint(key, kid, &s.claims());
        assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::BadSignature, "{kid}");
    }
}

#[tokio::test]
async fn refuses_a_tampered_token() {
    let s = setup().await;
    for (key, kid) in [(&s.rsa, "rsa-1"), (&s.ec, "ec-1"), (&s.ed, "ed-1")] {
        let token = mint(key, kid, &s.claims());
        let parts: Vec<&str> = token.split('.').collect();
        let admin = s.with(json!({"sub": "admin", "roles": ["system_admin"]}));
        let tampered = format!("{}.{}.{}", parts[0], b64(admin.to_string().as_bytes()), parts[2]);
        assert_eq!(s.verify(&tampered).await.unwrap_err(), JwtError::BadSignature, "{kid}");
        // A signature of the right length but altered.
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let altered = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
        assert_eq!(s.verify(&altered).await.unwrap_err(), JwtError::BadSignature, "{kid}");
        // The header changed (another typ) under the old signature.
        let header = json!({"alg": alg_name(key), "kid": kid, "typ": "at+jwt"});
        let moved = format!("{}.{}.{}", b64(header.to_string().as_bytes()), parts[1], parts[2]);
        assert_eq!(s.verify(&moved).await.unwrap_err(), JwtError::BadSignature, "{kid}");
        s.verify(&token).await.expect("the original still verifies");
    }
}

#[tokio::test]
async fn ignores_an_embedded_jwk() {
    let s = setup().await;
    let attacker = JwtSigningKey::generate_es256().unwrap();
    let claims = s.with(json!({"sub": "admin", "roles": ["system_admin"]}));
    let header = json!({"alg": "ES256", "kid": "attacker-1", "jwk": attacker.public_jwk("attacker-1")});
    let token = mint_raw(&attacker, &header, &claims);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::UnknownKey);
    // With the issuer's kid, the embedded key still is not the one used.
    let header = json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker.public_jwk("ec-1")});
    let token = mint_raw(&attacker, &header, &claims);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::BadSignature);
    // And x5c is ignored as well.
    let header = json!({"alg": "ES256", "kid": "ec-1", "x5c": ["MIIB"]});
    let token = mint_raw(&attacker, &header, &claims);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::BadSignature);
}

#[tokio::test]
async fn never_fetches_jku_or_x5u() {
    let s = setup().await;
    let attacker = JwtSigningKey::generate_ed25519().unwrap();
    let evil = Idp::start(vec![attacker.public_jwk("attacker-1"), attacker.public_jwk("ed-1")]).await;
    let claims = s.with(json!({"sub": "admin"}));
    let tokens = [
        mint_raw(&attacker, &json!({"alg": "EdDSA", "kid": "attacker-1", "jku": evil.url()}), &claims),
        mint_raw(&attacker, &json!({"alg": "EdDSA", "kid": "ed-1", "jku": evil.url()}), &claims),
        mint_raw(&attacker, &json!({"alg": "EdDSA", "kid": "attacker-2", "x5u": evil.url()}), &claims),
    ];
    let expected = [JwtError::UnknownKey, JwtError::BadSignature, JwtError::UnknownKey];
    for (token, expected) in tokens.iter().zip(&expected) {
        assert_eq!(&s.verify(token).await.unwrap_err(), expected);
    }
    // Once the throttle allows a refetch, it goes to the configured URL again, not to jku.
    s.advance(31);
    for (token, expected) in tokens.iter().zip(&expected) {
        assert_eq!(&s.verify(token).await.unwrap_err(), expected);
    }
    assert_eq!(evil.fetches().await, 0, "the attacker's server saw no request");
    assert_eq!(s.idp.fetches().await, 2);
}

#[tokio::test]
async fn refuses_garbage() {
    let s = setup().await;
    let valid = mint(&s.ed, "ed-1", &s.claims());
    let (header, rest) = valid.split_once('.').unwrap();
    let long = format!("{valid}{}", "A".repeat(20_000));
    let garbage: Vec<String> = vec![
        String::new(),
        "eyJ".into(),
        "Bearer x".into(),
        "a.b.c".into(),
        "a.b".into(),
        "...".into(),
        "a.b.c.d".into(),
        format!("{valid}.extra"),
        format!("{valid}.a.b"),
        format!("{header}.{rest}=="),
        format!("{header}=.{rest}"),
        format!("{}.{rest}", b64(b"not json")),
        format!("{}.{rest}", b64(b"[1,2]")),
        format!("{header}.{}.{}", b64(b"not json"), rest.split_once('.').unwrap().1),
        format!("{header}.{}.sig", b64(b"{\"iss\": 1")),
        format!("{header}.%%%.sig"),
        "é.é.é".into(),
        long,
        valid.replace('.', ""),
        "\0".repeat(10),
    ];
    for token in &garbage {
        let error = s.verify(token).await.expect_err(token);
        assert!(
            matches!(error, JwtError::Malformed | JwtError::UnsupportedAlgorithm | JwtError::BadSignature),
            "{token:.40}: {error:?}"
        );
    }
    // Header problems.
    let claims = s.claims();
    let no_kid = mint_raw(&s.ed, &json!({"alg": "EdDSA"}), &claims);
    assert_eq!(s.verify(&no_kid).await.unwrap_err(), JwtError::MissingKeyId);
    let numeric_kid = mint_raw(&s.ed, &json!({"alg": "EdDSA", "kid": 1}), &claims);
    assert_eq!(s.verify(&numeric_kid).await.unwrap_err(), JwtError::Malformed);
    let crit = mint_raw(&s.ed, &json!({"alg": "EdDSA", "kid": "ed-1", "crit": ["exp"], "exp": 1}), &claims);
    assert_eq!(s.verify(&crit).await.unwrap_err(), JwtError::CriticalHeader);
    let duplicate = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","kid":"ed-1","alg":"none"}"#),
        valid.split_once('.').unwrap().1
    );
    assert_eq!(s.verify(&duplicate).await.unwrap_err(), JwtError::Malformed);
    // A duplicated claim in a properly signed payload is malformed too.
    let payload = format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"a","exp":{0},"exp":{0}}}"#, s.now() + 60);
    let token = mint_text(&s.ed, r#"{"alg":"EdDSA","kid":"ed-1"}"#, &payload);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::Malformed);
}

#[tokio::test]
async fn a_key_is_only_used_for_its_own_algorithm() {
    let s = setup().await;
    let claims = s.claims();
    // An EC signature presented under the RSA key's kid, and every other pairing.
    for (key, kid) in [
        (&s.ec, "rsa-1"),
        (&s.ed, "rsa-1"),
        (&s.rsa, "ec-1"),
        (&s.ed, "ec-1"),
        (&s.rsa, "ed-1"),
        (&s.ec, "ed-1"),
    ] {
        let token = mint(key, kid, &claims);
        assert_eq!(
            s.verify(&token).await.unwrap_err(),
            JwtError::KeyMismatch,
            "{} under {kid}",
            alg_name(key)
        );
    }
    assert_eq!(s.idp.fetches().await, 1, "a known kid with the wrong algorithm fetches nothing");

    // A JWK naming another alg is not used, even for a key of the right type.
    let pinned = JwtSigningKey::generate_es256().unwrap();
    let mut jwk = pinned.public_jwk("pinned");
    jwk["alg"] = json!("ES384");
    let mut keys = s.idp.state.lock().unwrap().keys.clone();
    keys.push(jwk);
    s.idp.set_keys(keys);
    s.advance(31);
    let token = mint(&pinned, "pinned", &claims);
    assert_eq!(s.verify(&token).await.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(s.idp.fetches().await, 2);
}

#[tokio::test]
async fn picks_up_a_rotated_key_after_the_throttle() {
    let s = setup().await;
    let old = mint(&s.rsa, "rsa-1", &s.claims());
    s.verify(&old).await.unwrap();
    assert_eq!(s.idp.fetches().await, 1);

    let new_key = JwtSigningKey::generate_es256().unwrap();
    s.idp.set_keys(vec![new_key.public_jwk("ec-2")]);
    let new = mint(&new_key, "ec-2", &s.claims());
    assert_eq!(s.verify(&new).await.unwrap_err(), JwtError::UnknownKey, "throttled: fetched a moment ago");
    assert_eq!(s.idp.fetches().await, 1);
    s.advance(29);
    assert_eq!(s.verify(&new).await.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(s.idp.fetches().await, 1);
    s.advance(2);
    s.verify(&new).await.expect("the rotated key after 31 s, same verifier");
    assert_eq!(s.idp.fetches().await, 2);

    // The old key is gone from the set: its tokens verified before stay cached until they expire,
    // new ones are refused.
    s.verify(&old).await.expect("cached");
    let fresh_old = mint(&s.rsa, "rsa-1", &s.with(json!({"sub": "bob"})));
    assert_eq!(s.verify(&fresh_old).await.unwrap_err(), JwtError::UnknownKey);
}

#[tokio::test]
async fn a_rotated_key_seen_long_after_the_last_fetch_is_fetched_at_once() {
    let s = setup().await;
    s.verify(&mint(&s.ed, "ed-1", &s.claims())).await.unwrap();
    s.advance(45);
    let new_key = JwtSigningKey::generate_ed25519().unwrap();
    s.idp.set_keys(vec![s.ed.public_jwk("ed-1"), new_key.public_jwk("ed-2")]);
    s.verify(&mint(&new_key, "ed-2", &s.claims())).await.expect("first unknown kid after 45 s");
    assert_eq!(s.idp.fetches().await, 2);
}

#[tokio::test]
async fn cached_keys_survive_a_jwks_outage() {
    let s = setup().await;
    s.verify(&mint(&s.rsa, "rsa-1", &s.claims())).await.unwrap();

    // The endpoint answers 500: an unknown kid triggers a (failing) fetch, the cached keys stay.
    s.idp.set_status(500);
    s.advance(31);
    let unknown = mint(&s.ed, "ed-9", &s.claims());
    assert_eq!(s.verify(&unknown).await.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(s.idp.fetches().await, 2);
    for (key, kid) in [(&s.rsa, "rsa-1"), (&s.ec, "ec-1"), (&s.ed, "ed-1")] {
        s.verify(&mint(key, kid, &s.with(json!({"sub": "during-500"})))).await.expect(kid);
    }

    // The endpoint is gone altogether.
    let Setup { idp, clock, verifier, rsa, ec, ed } = s;
    drop(idp);
    clock.advance(TimeDelta::seconds(31));
    let now = clock.now().timestamp();
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "during-outage", "exp": now + 600});
    assert_eq!(verifier.verify(&mint(&ed, "ed-9", &claims)).await.unwrap_err(), JwtError::UnknownKey);
    for (key, kid) in [(&rsa, "rsa-1"), (&ec, "ec-1"), (&ed, "ed-1")] {
        verifier.verify(&mint(key, kid, &claims)).await.expect(kid);
    }
    // Even when the cached set is past its age and a refresh is due, the old keys keep working.
    clock.advance(TimeDelta::hours(2));
    let now = clock.now().timestamp();
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "much-later", "exp": now + 600});
    verifier.verify(&mint(&ec, "ec-1", &claims)).await.expect("stale but kept");
}

#[tokio::test]
async fn unavailable_when_the_jwks_was_never_fetched() {
    let clock = Arc::new(ManualClock::new(start_time()));
    let ed = JwtSigningKey::generate_ed25519().unwrap();
    let now = clock.now().timestamp();
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "a", "exp": now + 600});
    let token = mint(&ed, "ed-1", &claims);

    // Nothing listens there any more.
    let gone = Idp::start(vec![]).await;
    let url = gone.url();
    drop(gone);
    let verifier = verifier_for(url, Some(AUD), &clock);
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::Unavailable);

    // An endpoint that answers 500, then garbage, then an oversized set, then a good one.
    let idp = Idp::start(vec![ed.public_jwk("ed-1")]).await;
    idp.set_status(500);
    let verifier = verifier_for(idp.url(), Some(AUD), &clock);
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::Unavailable);
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::Unavailable, "throttled");
    assert_eq!(idp.fetches().await, 1);
    idp.set_status(200);
    idp.state.lock().unwrap().padding = 1024 * 1024;
    clock.advance(TimeDelta::seconds(31));
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::Unavailable, "over 1 MiB");
    idp.state.lock().unwrap().padding = 0;
    idp.set_keys(vec![json!({"kty": "oct", "kid": "ed-1", "k": "c2VjcmV0"})]);
    clock.advance(TimeDelta::seconds(31));
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::Unavailable, "no usable key");
    idp.set_keys(vec![ed.public_jwk("ed-1")]);
    clock.advance(TimeDelta::seconds(31));
    verifier.verify(&token).await.expect("the endpoint is back");
    assert_eq!(idp.fetches().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_flood_costs_one_fetch_per_thirty_seconds() {
    let s = setup().await;
    let valid = mint(&s.ed, "ed-1", &s.claims());
    s.verify(&valid).await.unwrap();
    assert_eq!(s.idp.fetches().await, 1);

    let flood = |round: usize| -> Vec<String> {
        (0..2000)
            .map(|i| {
                let kid = match i % 4 {
                    0 => format!("random-{round}-{i}-{}", hash_token(format!("{round}{i}").as_bytes()).0[0]),
                    1 => "../../etc/passwd".repeat(i % 7 + 1),
                    2 => format!("{}-{i}", "k".repeat(500)),
                    _ => format!("\"}}]}}\\u0000{i}"),
                };
                mint_raw(&s.ed, &json!({"alg": "EdDSA", "kid": kid}), &s.claims())
            })
            .collect()
    };
    let run = |tokens: Vec<String>| {
        let verifier = s.verifier.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for token in tokens {
                let verifier = verifier.clone();
                tasks.spawn(async move { verifier.verify(&token).await });
            }
            let mut refused = 0;
            while let Some(result) = tasks.join_next().await {
                assert_eq!(result.unwrap().unwrap_err(), JwtError::UnknownKey);
                refused += 1;
            }
            refused
        }
    };

    // Right after a fetch: the throttle allows none.
    assert_eq!(run(flood(0)).await, 2000);
    assert_eq!(s.idp.fetches().await, 1);
    // 31 s on: exactly one fetch, shared by all the concurrent misses.
    s.advance(31);
    assert_eq!(run(flood(1)).await, 2000);
    assert_eq!(s.idp.fetches().await, 2);
    // Another 31 s: one more.
    s.advance(31);
    assert_eq!(run(flood(2)).await, 2000);
    assert_eq!(s.idp.fetches().await, 3);
    // Meanwhile real tokens still verify, new ones included.
    s.verify(&valid).await.unwrap();
    s.verify(&mint(&s.rsa, "rsa-1", &s.claims())).await.unwrap();
    assert_eq!(s.idp.fetches().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_share_one_fetch() {
    let s = setup().await;
    s.idp.state.lock().unwrap().delay = Duration::from_millis(300);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let verifier = s.verifier.clone();
        let token = mint(&s.ec, "ec-1", &s.with(json!({"sub": format!("user-{i}")})));
        tasks.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().expect("verified");
    }
    assert_eq!(s.idp.fetches().await, 1);
}

#[tokio::test]
async fn a_verified_token_is_cached() {
    let s = setup().await;
    let token = mint(&s.rsa, "rsa-1", &s.with(json!({"groups": ["ops"]})));
    let first = s.verify(&token).await.unwrap();
    let second = s.verify(&token).await.unwrap();
    assert_eq!(s.idp.fetches().await, 1);
    assert_eq!(
        (first.subject, first.groups, first.token_hash),
        (second.subject, second.groups, second.token_hash)
    );

    // With the JWKS server gone and the keys dropped from a fresh fetch, the cached token still works.
    s.idp.set_keys(vec![s.ed.public_jwk("ed-1")]);
    s.advance(31);
    assert_eq!(s.verify(&mint(&s.ec, "ec-new", &s.claims())).await.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(s.idp.fetches().await, 2);
    let Setup { idp, clock, verifier, .. } = s;
    drop(idp);
    let again = verifier.verify(&token).await.expect("from the cache");
    assert_eq!(again.token_hash, hash_token(token.as_bytes()).0);
    // Until it expires (plus the leeway).
    clock.advance(TimeDelta::seconds(3600 + 60 - 31));
    verifier.verify(&token).await.expect("at exp + 60 s");
    clock.advance(TimeDelta::seconds(1));
    // No longer served from the cache: verified afresh, and its key has left the set since.
    assert_eq!(verifier.verify(&token).await.unwrap_err(), JwtError::UnknownKey);
}

#[tokio::test]
async fn a_jwks_older_than_an_hour_is_refreshed() {
    let s = setup().await;
    s.verify(&mint(&s.ec, "ec-1", &s.claims())).await.unwrap();
    // The issuer drops the EC key; nothing asks for an unknown kid, but the set ages out.
    s.idp.set_keys(vec![s.rsa.public_jwk("rsa-1")]);
    s.advance(1800);
    s.verify(&mint(&s.ec, "ec-1", &s.claims())).await.expect("half an hour on, the set is current");
    assert_eq!(s.idp.fetches().await, 1);
    s.advance(1800);
    assert_eq!(s.verify(&mint(&s.ec, "ec-1", &s.claims())).await.unwrap_err(), JwtError::UnknownKey);
    assert_eq!(s.idp.fetches().await, 2);
    s.verify(&mint(&s.rsa, "rsa-1", &s.claims())).await.unwrap();
}

#[tokio::test]
async fn configuration_is_checked() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(start_time()));
    let issuer = |iss: &str, url: &str, aud: Option<&str>| JwtIssuer {
        issuer: iss.into(),
        jwks_url: url.into(),
        audience: aud.map(str::to_owned),
    };
    let good = issuer(ISS, "https://idp.example.test/.well-known/jwks.json", Some(AUD));
    for bad in [
        vec![issuer("", "https://a.test/jwks", None)],
        vec![issuer(ISS, "not a url", None)],
        vec![issuer(ISS, "ftp://a.test/jwks", None)],
        vec![issuer(ISS, "file:///etc/passwd", None)],
        vec![issuer(ISS, "https://a.test/jwks", Some(""))],
        vec![good.clone(), issuer(ISS, "https://b.test/jwks", None)],
    ] {
        let error = JwtVerifier::new(bad, clock.clone()).unwrap_err();
        assert!(matches!(error, JwtError::InvalidConfig(_)), "{error}");
    }
    let verifier =
        JwtVerifier::new(vec![good, issuer("other", "http://127.0.0.1:1/jwks", None)], clock.clone())
            .unwrap();
    assert!(verifier.is_configured());
    assert!(format!("{verifier:?}").contains("idp.example.test"));

    let none = JwtVerifier::new(vec![], clock).unwrap();
    assert!(!none.is_configured());
    let ed = JwtSigningKey::generate_ed25519().unwrap();
    let token = mint(&ed, "k", &json!({"iss": ISS, "aud": AUD, "sub": "a", "exp": 2_000_000_000}));
    assert_eq!(none.verify(&token).await.unwrap_err(), JwtError::UnknownIssuer);
}

#[tokio::test]
async fn two_issuers_each_use_their_own_keys() {
    let s = setup().await;
    let other_key = JwtSigningKey::generate_ed25519().unwrap();
    let other = Idp::start(vec![other_key.public_jwk("ed-1")]).await;
    let verifier = JwtVerifier::new(
        vec![
            JwtIssuer { issuer: ISS.into(), jwks_url: s.idp.url(), audience: Some(AUD.into()) },
            JwtIssuer { issuer: "https://other.test".into(), jwks_url: other.url(), audience: None },
        ],
        s.clock.clone(),
    )
    .unwrap();
    let mine = s.claims();
    let theirs = s.with(json!({"iss": "https://other.test", "aud": "x"}));
    assert_eq!(verifier.verify(&mint(&s.ed, "ed-1", &mine)).await.unwrap().issuer, ISS);
    assert_eq!(
        verifier.verify(&mint(&other_key, "ed-1", &theirs)).await.unwrap().issuer,
        "https://other.test"
    );
    // The same kid under the other issuer's name does not verify with this issuer's key.
    assert_eq!(verifier.verify(&mint(&s.ed, "ed-1", &theirs)).await.unwrap_err(), JwtError::BadSignature);
    assert_eq!(verifier.verify(&mint(&other_key, "ed-1", &mine)).await.unwrap_err(), JwtError::BadSignature);
    assert_eq!((s.idp.fetches().await, other.fetches().await), (1, 1));
}

#[tokio::test]
async fn errors_never_contain_the_token_or_claim_values() {
    let s = setup().await;
    let marker = "MARKER-b7e1";
    let tokens = [
        mint(&s.ed, "ed-1", &s.with(json!({"sub": 5, "identity_type": marker}))),
        mint(&s.ed, "ed-1", &s.with(json!({"identity_type": marker}))),
        mint(&s.ed, "ed-1", &s.with(json!({"aud": marker}))),
        mint(&s.ed, "ed-1", &s.with(json!({"iss": marker}))),
        mint(&s.ed, marker, &s.claims()),
        mint_raw(&s.ed, &json!({"alg": marker, "kid": "ed-1"}), &s.claims()),
    ];
    for token in tokens {
        let error = s.verify(&token).await.unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(marker) && !text.contains(&token[..20]), "{text}");
        }
        assert!(error.to_string().starts_with(|c: char| c.is_ascii_lowercase()));
    }
}
