//! Conformance cases of federation backends' configurations.

use super::{Dyn, at, setup};
use crate::{DEFAULT_TENANT, FederationBackendRecord, StoreError};

fn backend(id: &str, name: &str, mount: &str) -> FederationBackendRecord {
    FederationBackendRecord {
        tenant: DEFAULT_TENANT.into(),
        id: format!("fed_{id}"),
        name: name.into(),
        backend_type: "hashicorp_vault".into(),
        mode: "proxy".into(),
        mount: mount.into(),
        config: "{\"connection\":{\"address\":\"http://vault:8200\"}}".into(),
        created_at: at(1),
        updated_at: at(1),
    }
}

pub async fn federation_backends_round_trip(store: Dyn) {
    setup(&store).await;
    let a = backend("a", "vault-prod", "external/hashicorp");
    store.create_federation_backend(&a).await.expect("create");
    // Ids, names and mounts are each the tenant's own.
    for taken in [
        backend("a", "other", "external/other"),
        backend("b", "vault-prod", "external/other"),
        backend("b", "other", "external/hashicorp"),
    ] {
        assert!(
            matches!(store.create_federation_backend(&taken).await, Err(StoreError::AlreadyExists)),
            "{taken:?}"
        );
    }
    let b = backend("b", "aws", "external/aws");
    store.create_federation_backend(&b).await.expect("create b");
    let mut elsewhere = backend("a", "vault-prod", "external/hashicorp");
    elsewhere.tenant = "tnt_other".into();
    store.create_federation_backend(&elsewhere).await.expect("another tenant may reuse all three");

    assert_eq!(store.get_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("get"), a);
    assert!(matches!(store.get_federation_backend(DEFAULT_TENANT, "fed_z").await, Err(StoreError::NotFound)));
    let ids = |list: Vec<FederationBackendRecord>| list.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_federation_backends(DEFAULT_TENANT, None, 10).await.expect("list")),
        ["fed_a", "fed_b"]
    );
    assert_eq!(
        ids(store.list_federation_backends(DEFAULT_TENANT, Some("fed_a"), 10).await.expect("page")),
        ["fed_b"]
    );
    assert_eq!(ids(store.list_federation_backends(DEFAULT_TENANT, None, 1).await.expect("limit")), ["fed_a"]);

    let mut changed = a.clone();
    changed.mode = "sync".into();
    changed.config = "{\"connection\":{\"address\":\"http://vault-2:8200\"}}".into();
    changed.updated_at = at(2);
    store.update_federation_backend(&changed).await.expect("update");
    assert_eq!(store.get_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("get"), changed);
    let mut clash = changed.clone();
    clash.mount = "external/aws".into();
    assert!(matches!(store.update_federation_backend(&clash).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(
        store.update_federation_backend(&backend("z", "z", "z/z")).await,
        Err(StoreError::NotFound)
    ));

    store.delete_federation_backend(DEFAULT_TENANT, "fed_a").await.expect("delete");
    assert!(matches!(
        store.delete_federation_backend(DEFAULT_TENANT, "fed_a").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ids(store.list_federation_backends(DEFAULT_TENANT, None, 10).await.expect("list")), ["fed_b"]);
    assert!(store.get_federation_backend("tnt_other", "fed_a").await.is_ok(), "the other tenant's stays");
}
