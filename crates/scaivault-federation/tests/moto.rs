//! The AWS Secrets Manager adapter against moto's real implementation of the API on loopback
//! (`moto_server`, from `moto[server]`). Outside CI without it the tests print a notice and pass;
//! under `CI=true` a missing `moto_server` fails them.

use scaivault_federation::testing::MotoServer;
use scaivault_federation::{AwsBackend, AwsConnection, AwsCredentials, Backend, FederationError};
use serde_json::{Value, json};

fn backend(moto: &MotoServer) -> AwsBackend {
    AwsBackend::new(AwsConnection {
        region: MotoServer::REGION.into(),
        endpoint: Some(moto.endpoint().to_owned()),
        credentials: MotoServer::credentials(),
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
        credentials: creds,
    })
    .unwrap();
    assert!(!format!("{b:?}").contains("do-not-print-me"));
}
