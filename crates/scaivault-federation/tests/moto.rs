//! The AWS Secrets Manager adapter against moto's real implementation of the API on loopback
//! (`moto_server`, from `moto[server]`). Outside CI without it the tests print a notice and pass;
//! under `CI=true` a missing `moto_server` fails them.

use scaivault_federation::testing::MotoServer;
use scaivault_federation::{
    AwsAuth, AwsBackend, AwsConnection, AwsCredentials, Backend, FederationError, RoleSource,
};
use serde_json::{Value, json};

fn backend(moto: &MotoServer) -> AwsBackend {
    AwsBackend::new(AwsConnection {
        region: MotoServer::REGION.into(),
        endpoint: Some(moto.endpoint().to_owned()),
        auth: AwsAuth::Keys(MotoServer::credentials()),
    })
    .unwrap()
}

#[tokio::test]
async fn reads_strings_json_binaries_and_tags() {
    let Some(moto) = MotoServer::start().await else { return };
    moto.call(
        "CreateSecret",
        json!({"Name": "prod/db/password", "SecretString": "{\"user\": \"app\", \"password\": \"p-1\"}",
               "Tags": [{"Key": "owner", "Value": "platform"}]}),
    )
    .await;
    moto.call(
        "PutSecretValue",
        json!({"SecretId": "prod/db/password", "SecretString": "{\"user\": \"app\", \"password\": \"p-2\"}"}),
    )
    .await;
    moto.call("CreateSecret", json!({"Name": "prod/api-key", "SecretString": "plain-key"})).await;
    moto.call("CreateSecret", json!({"Name": "prod/cert", "SecretBinary": "AAECAw=="})).await;

    let b = backend(&moto);
    b.check().await.expect("ListSecrets answers");
    let s = b.read("prod/db/password", None).await.unwrap();
    assert_eq!(Value::Object(s.data), json!({"user": "app", "password": "p-2"}), "AWSCURRENT is read");
    assert_eq!(s.custom.get("owner").map(String::as_str), Some("platform"));
    assert!(s.created_at.is_some());
    assert_eq!(s.version, None);
    assert_eq!(
        Value::Object(b.read("prod/api-key", None).await.unwrap().data),
        json!({"value": "plain-key"})
    );
    assert_eq!(
        Value::Object(b.read("prod/cert", None).await.unwrap().data),
        json!({"value_base64": "AAECAw=="})
    );
    assert_eq!(b.read("prod/none", None).await.unwrap_err(), FederationError::NotFound("prod/none".into()));
    assert!(matches!(b.read("prod/api-key", Some(1)).await, Err(FederationError::Unsupported(_))));
}

#[tokio::test]
async fn a_stopped_service_is_unreachable_and_bad_keys_print_nothing() {
    let Some(mut moto) = MotoServer::start().await else { return };
    let b = backend(&moto);
    b.check().await.unwrap();
    moto.stop();
    assert!(matches!(b.read("x", None).await, Err(FederationError::Unreachable(_))));
    let creds = AwsCredentials::from_secret(
        json!({"access_key_id": "AKIA2", "secret_access_key": "do-not-print-me"}).as_object().unwrap(),
    )
    .unwrap();
    let b = AwsBackend::new(AwsConnection {
        region: "us-east-1".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        auth: AwsAuth::Keys(creds),
    })
    .unwrap();
    assert!(!format!("{b:?}").contains("do-not-print-me"));
}

#[tokio::test]
async fn lists_versions_reads_and_writes_for_a_sync() {
    let Some(moto) = MotoServer::start().await else { return };
    moto.call("CreateSecret", json!({"Name": "prod/db/password", "SecretString": "{\"password\": \"p-1\"}"}))
        .await;
    moto.call(
        "PutSecretValue",
        json!({"SecretId": "prod/db/password", "SecretString": "{\"password\": \"p-2\"}"}),
    )
    .await;
    moto.call("CreateSecret", json!({"Name": "prod/api-key", "SecretString": "k"})).await;
    moto.call("CreateSecret", json!({"Name": "staging/api-key", "SecretString": "s"})).await;
    let b = backend(&moto);

    let mut names = b.list("prod/", 100).await.unwrap();
    names.sort();
    assert_eq!(names, ["prod/api-key", "prod/db/password"]);
    assert_eq!(b.list("", 100).await.unwrap().len(), 3);
    assert!(matches!(b.list("", 2).await, Err(FederationError::Unsupported(_))));

    // AWSCURRENT is the last version; the previous one is still readable by its id.
    let versions = b.versions("prod/db/password").await.unwrap();
    assert_eq!(versions.len(), 2);
    let current = b.read_version("prod/db/password", &versions[1].id).await.unwrap();
    assert_eq!(current.data["password"], "p-2");
    assert_eq!(b.read_version("prod/db/password", &versions[0].id).await.unwrap().data["password"], "p-1");
    // moto answers a missing secret's ListSecretVersionIds with a 500 where AWS says
    // ResourceNotFoundException (sorted into NotFound by the unit tests of the error mapping).
    assert!(b.versions("prod/none").await.is_err());

    // Writes take the inverse of the read shapes; a missing secret is created.
    let data = json!({"password": "p-3"}).as_object().unwrap().clone();
    let written = b.write("prod/db/password", &data).await.unwrap();
    assert_eq!(b.versions("prod/db/password").await.unwrap().last().map(|v| &v.id), Some(&written.id));
    assert_eq!(b.read("prod/db/password", None).await.unwrap().data["password"], "p-3");
    let plain = json!({"value": "fresh"}).as_object().unwrap().clone();
    b.write("prod/new-key", &plain).await.unwrap();
    assert_eq!(Value::Object(b.read("prod/new-key", None).await.unwrap().data), json!({"value": "fresh"}));
    let raw = moto.call("GetSecretValue", json!({"SecretId": "prod/new-key"})).await;
    assert_eq!(raw["SecretString"], "fresh");
}

#[tokio::test]
async fn a_role_assumed_through_motos_sts_reads_and_writes() {
    let Some(moto) = MotoServer::start().await else { return };
    moto.call("CreateSecret", json!({"Name": "prod/db/password", "SecretString": "{\"password\": \"p-1\"}"}))
        .await;
    let b = AwsBackend::new(AwsConnection {
        region: MotoServer::REGION.into(),
        endpoint: Some(moto.endpoint().to_owned()),
        auth: AwsAuth::AssumeRole {
            external_id: Some("scaivault-tenant-1".into()),
            role_arn: "arn:aws:iam::123456789012:role/scaivault-reader".into(),
            source: RoleSource::Keys(MotoServer::credentials()),
        },
    })
    .unwrap();
    b.check().await.expect("ListSecrets with the role's keys");
    assert_eq!(b.read("prod/db/password", None).await.unwrap().data["password"], "p-1");
    let data = json!({"password": "p-2"}).as_object().unwrap().clone();
    b.write("prod/db/password", &data).await.unwrap();
    let raw = moto.call("GetSecretValue", json!({"SecretId": "prod/db/password"})).await;
    assert_eq!(raw["SecretString"], "{\"password\":\"p-2\"}");
}
