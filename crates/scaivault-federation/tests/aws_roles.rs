//! The AWS adapter's `role_arn`: the role assumed through STS (`AssumeRole`, query protocol,
//! answered in XML) and its temporary keys signing Secrets Manager's calls, against stand-ins built
//! from AWS's public API documentation; the server's own identity found in the environment, a web
//! identity token file, the container credentials endpoint and the instance metadata service
//! (IMDSv2). moto's real STS is in `moto.rs`.

use scaivault_federation::{
    AwsAuth, AwsBackend, AwsConnection, AwsCredentials, Backend, FederationError, RoleSource,
    ServerEnvironment,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, header_regex, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ROLE: &str = "arn:aws:iam::123456789012:role/scaivault-reader";

fn keys(id: &str, secret: &str) -> AwsCredentials {
    AwsCredentials::from_secret(
        json!({"access_key_id": id, "secret_access_key": secret}).as_object().unwrap(),
    )
    .unwrap()
}

fn backend(server: &MockServer, source: RoleSource) -> AwsBackend {
    AwsBackend::new(AwsConnection {
        region: "eu-west-1".into(),
        endpoint: Some(server.uri()),
        auth: AwsAuth::AssumeRole { role_arn: ROLE.into(), external_id: None, source },
    })
    .unwrap()
}

/// STS's answer to `action` with temporary keys `id` / `token`, valid for an hour.
fn issued(action: &str, id: &str, token: &str) -> ResponseTemplate {
    let expires =
        (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ResponseTemplate::new(200).set_body_string(format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <AssumedRoleUser><AssumedRoleId>AROA:scaivault</AssumedRoleId><Arn>{ROLE}/scaivault</Arn></AssumedRoleUser>\
         <Credentials><AccessKeyId>{id}</AccessKeyId><SecretAccessKey>secret-of-{id}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>\
         </{action}Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
    ))
}

fn sts_fault(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_string(format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>User is not authorized to perform: sts:AssumeRole</Message></Error>\
         <RequestId>r-2</RequestId></ErrorResponse>"
    ))
}

/// A signed STS `AssumeRole` request for the role, by `signer`'s key id.
fn assume_role(signer: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("content-type", "application/x-www-form-urlencoded; charset=utf-8"))
        .and(body_string_contains("Action=AssumeRole&"))
        .and(body_string_contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fscaivault-reader"))
        .and(body_string_contains("RoleSessionName=scaivault"))
        .and(body_string_contains("Version=2011-06-15"))
        .and(header_regex(
            "authorization",
            &format!("^AWS4-HMAC-SHA256 Credential={signer}/\\d{{8}}/eu-west-1/sts/aws4_request, "),
        ))
}

/// Secrets Manager's `GetSecretValue`, signed with the temporary keys `id` and their `token`.
fn get_secret_value(id: &str, token: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .and(header("x-amz-security-token", token))
        .and(header_regex(
            "authorization",
            &format!("^AWS4-HMAC-SHA256 Credential={id}/\\d{{8}}/eu-west-1/secretsmanager/aws4_request, "),
        ))
}

fn secret_value() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"Name": "prod/db", "SecretString": "{\"password\": \"p-1\"}", "CreatedDate": 1.7e9}),
    )
}

/// `DescribeSecret` (tags) answered for anyone.
async fn describe(server: &MockServer) {
    Mock::given(header("x-amz-target", "secretsmanager.DescribeSecret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Name": "prod/db", "Tags": []})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_role_is_assumed_once_with_a_credential_secrets_keys_and_its_keys_sign_the_reads() {
    let server = MockServer::start().await;
    assume_role("AKIABASE")
        .respond_with(issued("AssumeRole", "ASIATEMP1", "token-1"))
        .expect(1)
        .mount(&server)
        .await;
    get_secret_value("ASIATEMP1", "token-1").respond_with(secret_value()).expect(2).mount(&server).await;
    describe(&server).await;

    let b = backend(&server, RoleSource::Keys(keys("AKIABASE", "base-secret-do-not-print")));
    for _ in 0..2 {
        let s = b.read("prod/db", None).await.unwrap();
        assert_eq!(Value::Object(s.data), json!({"password": "p-1"}));
    }
    let printed = format!("{b:?}");
    assert!(printed.contains(ROLE) && !printed.contains("base-secret-do-not-print"), "{printed}");
}

#[tokio::test]
async fn expired_temporary_keys_are_renewed_once_and_a_refused_role_is_denied() {
    let server = MockServer::start().await;
    // The first keys STS gives are refused by Secrets Manager as expired; the second work.
    assume_role("AKIABASE")
        .respond_with(issued("AssumeRole", "ASIAOLD", "token-old"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    assume_role("AKIABASE").respond_with(issued("AssumeRole", "ASIANEW", "token-new")).mount(&server).await;
    get_secret_value("ASIAOLD", "token-old")
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"__type": "ExpiredTokenException", "message": "The security token included in the request is expired"}),
        ))
        .mount(&server)
        .await;
    get_secret_value("ASIANEW", "token-new").respond_with(secret_value()).expect(1).mount(&server).await;
    describe(&server).await;
    let b = backend(&server, RoleSource::Keys(keys("AKIABASE", "s")));
    b.read("prod/db", None).await.unwrap();

    // A role the keys may not assume: the credential is refused, and nothing of STS's text is kept.
    let denied = MockServer::start().await;
    assume_role("AKIABASE").respond_with(sts_fault(403, "AccessDenied")).expect(1).mount(&denied).await;
    let b = backend(&denied, RoleSource::Keys(keys("AKIABASE", "s")));
    // Refused once, the keys are not presented again for a while: the second read is refused here.
    for _ in 0..2 {
        assert_eq!(b.read("prod/db", None).await.unwrap_err(), FederationError::Denied { status: 403 });
    }
    // STS throttling or down is not a verdict on the credential.
    let busy = MockServer::start().await;
    assume_role("AKIABASE").respond_with(sts_fault(400, "Throttling")).mount(&busy).await;
    let b = backend(&busy, RoleSource::Keys(keys("AKIABASE", "s")));
    assert!(matches!(b.read("prod/db", None).await, Err(FederationError::Unreachable(_))));
}

#[tokio::test]
async fn the_servers_own_keys_in_the_environment_sign_assume_role() {
    let server = MockServer::start().await;
    assume_role("AKIAENV")
        .and(header("x-amz-security-token", "env-session"))
        .respond_with(issued("AssumeRole", "ASIAROLE", "role-token"))
        .expect(1)
        .mount(&server)
        .await;
    get_secret_value("ASIAROLE", "role-token").respond_with(secret_value()).mount(&server).await;
    describe(&server).await;
    let env = ServerEnvironment::from_pairs([
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-session"),
    ])
    .lending_to_loopback(true);
    backend(&server, RoleSource::Ambient(env)).read("prod/db", None).await.unwrap();
}

#[tokio::test]
async fn the_instance_profile_is_read_through_imdsv2() {
    let imds = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(header("x-aws-ec2-metadata-token-ttl-seconds", "21600"))
        .respond_with(ResponseTemplate::new(200).set_body_string("imds-session"))
        .expect(1)
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ec2-role\n"))
        .mount(&imds)
        .await;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339();
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/ec2-role"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEC2",
            "SecretAccessKey": "ec2-secret", "Token": "ec2-token", "Expiration": expires,
        })))
        .mount(&imds)
        .await;
    let server = MockServer::start().await;
    assume_role("ASIAEC2")
        .and(header("x-amz-security-token", "ec2-token"))
        .respond_with(issued("AssumeRole", "ASIAROLE", "role-token"))
        .mount(&server)
        .await;
    get_secret_value("ASIAROLE", "role-token").respond_with(secret_value()).expect(2).mount(&server).await;
    describe(&server).await;
    let env = ServerEnvironment::from_pairs([("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.uri())])
        .lending_to_loopback(true);
    let b = backend(&server, RoleSource::Ambient(env));
    b.read("prod/db", None).await.unwrap();
    b.read("prod/db", None).await.unwrap();

    // An instance without a role says so.
    let bare = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_string("s"))
        .mount(&bare)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(404)).mount(&bare).await;
    let env = ServerEnvironment::from_pairs([("AWS_EC2_METADATA_SERVICE_ENDPOINT", bare.uri())])
        .lending_to_loopback(true);
    let e = backend(&server, RoleSource::Ambient(env)).read("prod/db", None).await.unwrap_err();
    assert!(matches!(&e, FederationError::Config(m) if m.contains("no IAM role")), "{e}");
}

#[tokio::test]
async fn a_pods_web_identity_is_exchanged_unsigned_and_is_the_role_when_it_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJ.pod-token.sig\n").unwrap();
    let server = MockServer::start().await;
    let record = |r: &Request| r.headers.get("authorization").is_none();
    Mock::given(method("POST"))
        .and(body_string_contains("Action=AssumeRoleWithWebIdentity"))
        .and(body_string_contains("RoleSessionName=pod-session"))
        .and(body_string_contains("WebIdentityToken=eyJ.pod-token.sig"))
        .and(move |r: &Request| record(r))
        .respond_with(issued("AssumeRoleWithWebIdentity", "ASIAPOD", "pod-token"))
        .expect(2)
        .mount(&server)
        .await;
    // Another role than the pod's: assumed with the pod's keys.
    assume_role("ASIAPOD")
        .and(header("x-amz-security-token", "pod-token"))
        .respond_with(issued("AssumeRole", "ASIAROLE", "role-token"))
        .expect(1)
        .mount(&server)
        .await;
    get_secret_value("ASIAROLE", "role-token").respond_with(secret_value()).expect(1).mount(&server).await;
    // The pod's own role: its keys are used as they are.
    get_secret_value("ASIAPOD", "pod-token").respond_with(secret_value()).expect(1).mount(&server).await;
    describe(&server).await;
    let env = |role: &str| {
        ServerEnvironment::from_pairs([
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.display().to_string()),
            ("AWS_ROLE_ARN", role.to_owned()),
            ("AWS_ROLE_SESSION_NAME", "pod-session".to_owned()),
        ])
        .lending_to_loopback(true)
    };
    backend(&server, RoleSource::Ambient(env("arn:aws:iam::123456789012:role/pod")))
        .read("prod/db", None)
        .await
        .unwrap();
    backend(&server, RoleSource::Ambient(env(ROLE))).read("prod/db", None).await.unwrap();
}

#[tokio::test]
async fn container_credentials_are_fetched_with_their_authorization_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token\n").unwrap();
    let agent = MockServer::start().await;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    Mock::given(method("GET"))
        .and(path("/v1/credentials"))
        .and(header("authorization", "pod-identity-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessKeyId": "ASIACONT", "SecretAccessKey": "cont-secret", "Token": "cont-token", "Expiration": expires,
        })))
        .expect(1)
        .mount(&agent)
        .await;
    let server = MockServer::start().await;
    assume_role("ASIACONT")
        .and(header("x-amz-security-token", "cont-token"))
        .respond_with(issued("AssumeRole", "ASIAROLE", "role-token"))
        .mount(&server)
        .await;
    get_secret_value("ASIAROLE", "role-token").respond_with(secret_value()).mount(&server).await;
    describe(&server).await;
    let env = ServerEnvironment::from_pairs([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{}/v1/credentials", agent.uri())),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.display().to_string()),
    ])
    .lending_to_loopback(true);
    backend(&server, RoleSource::Ambient(env)).read("prod/db", None).await.unwrap();
}

#[tokio::test]
async fn the_servers_identity_is_not_presented_to_another_endpoint() {
    let e = AwsBackend::new(AwsConnection {
        region: "eu-west-1".into(),
        endpoint: Some("https://secretsmanager.example.com".into()),
        auth: AwsAuth::AssumeRole {
            role_arn: ROLE.into(),
            external_id: None,
            source: RoleSource::Ambient(
                ServerEnvironment::from_pairs([("AWS_ACCESS_KEY_ID", "A")]).lending_to_loopback(true),
            ),
        },
    })
    .unwrap_err();
    assert!(matches!(&e, FederationError::Config(m) if m.contains("only to AWS's own services")), "{e}");
    let e = AwsBackend::new(AwsConnection {
        region: "eu-west-1".into(),
        endpoint: None,
        auth: AwsAuth::AssumeRole {
            role_arn: "reader".into(),
            external_id: None,
            source: RoleSource::Keys(keys("A", "s")),
        },
    })
    .unwrap_err();
    assert!(matches!(&e, FederationError::Config(m) if m.contains("not a role's ARN")), "{e}");
}

#[tokio::test]
async fn a_refused_action_keeps_the_roles_keys_and_they_are_renewed_near_their_end() {
    let server = MockServer::start().await;
    // Keys valid for two seconds.
    let short_lived = |id: &str, token: &str| {
        let expires = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
        ResponseTemplate::new(200).set_body_string(format!(
            "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{id}</AccessKeyId>\
             <SecretAccessKey>s</SecretAccessKey><SessionToken>{token}</SessionToken>\
             <Expiration>{expires}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>"
        ))
    };
    assume_role("AKIABASE")
        .respond_with(short_lived("ASIAFIRST", "token-1"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    assume_role("AKIABASE").respond_with(short_lived("ASIASECOND", "token-2")).expect(1).mount(&server).await;
    get_secret_value("ASIAFIRST", "token-1").respond_with(secret_value()).expect(2).mount(&server).await;
    get_secret_value("ASIASECOND", "token-2").respond_with(secret_value()).expect(1).mount(&server).await;
    // A least-privilege role may not DescribeSecret: that refusal is the action's, not the keys'.
    Mock::given(header("x-amz-target", "secretsmanager.DescribeSecret"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"__type": "AccessDeniedException"})))
        .mount(&server)
        .await;
    let b = backend(&server, RoleSource::Keys(keys("AKIABASE", "s")));
    b.read("prod/db", None).await.unwrap();
    b.read("prod/db", None).await.unwrap();
    // Past their expiry (a life this short is renewed only at its end).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    b.read("prod/db", None).await.unwrap();
}

#[tokio::test]
async fn the_external_id_a_roles_trust_policy_requires_is_sent() {
    let server = MockServer::start().await;
    assume_role("AKIABASE")
        .and(body_string_contains("ExternalId=tenant-42%3Aprod"))
        .respond_with(issued("AssumeRole", "ASIAEXT", "ext-token"))
        .expect(1)
        .mount(&server)
        .await;
    get_secret_value("ASIAEXT", "ext-token").respond_with(secret_value()).mount(&server).await;
    describe(&server).await;
    let b = AwsBackend::new(AwsConnection {
        region: "eu-west-1".into(),
        endpoint: Some(server.uri()),
        auth: AwsAuth::AssumeRole {
            role_arn: ROLE.into(),
            external_id: Some("tenant-42:prod".into()),
            source: RoleSource::Keys(keys("AKIABASE", "s")),
        },
    })
    .unwrap();
    b.read("prod/db", None).await.unwrap();
    for bad in ["x", "has space", "semi;colon"] {
        assert!(scaivault_federation::check_external_id(bad).is_err(), "{bad}");
    }
}

/// A listing whose `NextToken` repeats (or that runs on through empty pages) ends with an error
/// instead of being followed for ever.
#[tokio::test]
async fn a_listing_whose_next_token_repeats_is_cut_off() {
    let sm = MockServer::start().await;
    Mock::given(header("x-amz-target", "secretsmanager.ListSecrets"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"SecretList": [], "NextToken": "again"})),
        )
        .mount(&sm)
        .await;
    let backend = AwsBackend::new(AwsConnection {
        region: "eu-west-1".into(),
        endpoint: Some(sm.uri()),
        auth: AwsAuth::Keys(keys("AKIDLISTING", "listing-secret")),
    })
    .unwrap();
    let e = backend.list("", 1000).await.expect_err("an endless listing");
    assert!(
        matches!(&e, FederationError::Backend { message, .. } if message.contains("does not end")),
        "{e:?}"
    );
    assert_eq!(
        sm.received_requests().await.expect("requests").len(),
        2,
        "the repeat is seen on the second page"
    );
}
