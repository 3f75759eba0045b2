//! Random tenants, secret trees, policies and bindings, driven through the router: every decision
//! equals a reference evaluator written here, and no request in one tenant reads, lists, writes or
//! learns the existence of another tenant's secret (a foreign path answers exactly as a missing one).

use crate::common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::json;

const TENANTS: [&str; 2] = ["tnt_default", "tnt_b"];
const WORDS: [&str; 4] = ["a", "b", "db-x", "c"];
const PATTERNS: [&str; 9] = ["**", "a/**", "a/*", "a/b", "*/c", "db-*", "b/**/c", "a/db-*", "c"];
const IDENTITIES: [(&str, &str); 3] =
    [("service_account", "sa:one"), ("service_account", "sa:two"), ("group", "ops")];

#[derive(Debug, Clone)]
struct Rule {
    pattern: &'static str,
    permissions: Vec<&'static str>,
    deny: bool,
}

#[derive(Debug, Clone)]
struct TenantWorld {
    secrets: BTreeSet<String>,
    /// Each policy: its rules and the identities (indexes into IDENTITIES) bound to it.
    policies: Vec<(Vec<Rule>, Vec<usize>)>,
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS.to_vec()), 1..4).prop_map(|w| w.join("/"))
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(PATTERNS.to_vec()),
        prop::sample::subsequence(vec!["read", "list", "write"], 1..=3),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(pattern, permissions, deny)| Rule { pattern, permissions, deny })
}

fn world() -> impl Strategy<Value = TenantWorld> {
    (
        prop::collection::btree_set(path(), 1..6),
        prop::collection::vec(
            (prop::collection::vec(rule(), 1..4), prop::sample::subsequence(vec![0usize, 1, 2], 0..=3)),
            0..4,
        ),
    )
        .prop_map(|(secrets, policies)| TenantWorld { secrets, policies })
}

fn ref_segment(p: &[u8], t: &[u8]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => (0..=t.len()).any(|k| ref_segment(rest, &t[k..])),
        Some((c, rest)) => t.first() == Some(c) && ref_segment(rest, &t[1..]),
    }
}

fn ref_match(p: &[&str], t: &[&str]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((&"**", [])) => !t.is_empty(),
        Some((&"**", rest)) => (0..=t.len()).any(|k| ref_match(rest, &t[k..])),
        Some((seg, rest)) => t.split_first().is_some_and(|(first, others)| {
            ref_segment(seg.as_bytes(), first.as_bytes()) && ref_match(rest, others)
        }),
    }
}

/// The rules in words: a matching deny blocks; else a matching allow grants; else denied.
fn reference(world: &TenantWorld, caller: &[usize], permission: &str, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let rules: Vec<&Rule> = world
        .policies
        .iter()
        .filter(|(_, bound)| bound.iter().any(|i| caller.contains(i)))
        .flat_map(|(rules, _)| rules)
        .filter(|r| r.permissions.contains(&permission))
        .filter(|r| ref_match(&r.pattern.split('/').collect::<Vec<_>>(), &segments))
        .collect();
    !rules.iter().any(|r| r.deny) && rules.iter().any(|r| !r.deny)
}

async fn check(worlds: [TenantWorld; 2], probe: Vec<String>, write_path: String) {
    let app = common::app().await;
    app.root("POST", "/v1/identity/tenants", Some(json!({"id": "tnt_b", "name": "b"}))).await;
    for (t, world) in TENANTS.iter().zip(&worlds) {
        for p in &world.secrets {
            let r =
                app.root("PUT", &format!("/v1/t/{t}/secrets/{p}"), Some(json!({"data": {"owner": t}}))).await;
            assert!(r.status.is_success(), "{:?}", r.body);
        }
        for (i, (rules, bound)) in world.policies.iter().enumerate() {
            let rules: Vec<_> = rules
                .iter()
                .map(|r| json!({"path_pattern": r.pattern, "permissions": r.permissions, "effect": if r.deny { "deny" } else { "allow" }}))
                .collect();
            let r = app
                .root(
                    "POST",
                    &format!("/v1/t/{t}/policies"),
                    Some(json!({"name": format!("p{i}"), "rules": rules})),
                )
                .await;
            let id = r.body["id"].as_str().expect("policy").to_owned();
            for &b in bound {
                let (kind, name) = IDENTITIES[b];
                app.root(
                    "POST",
                    &format!("/v1/t/{t}/policies/{id}/bindings"),
                    Some(json!({"identity_type": kind, "identity_id": name})),
                )
                .await;
            }
        }
    }
    // sa:one in group ops, in each tenant.
    let caller = [0usize, 2];
    for (t, world) in TENANTS.iter().zip(&worlds) {
        let token = {
            let r = app
                .root(
                    "POST",
                    "/v1/auth/tokens",
                    Some(json!({"tenant_id": t, "identity_type": "service_account", "identity_id": "sa:one",
                        "groups": ["ops"], "scopes": ["secrets:read", "secrets:list", "secrets:write"]})),
                )
                .await;
            r.body["token"].as_str().expect("token").to_owned()
        };
        let other = &worlds[usize::from(*t == TENANTS[0])];
        let all: BTreeSet<&String> = world.secrets.iter().chain(&other.secrets).chain(&probe).collect();
        for p in all {
            let r = app.as_token(&token, "GET", &format!("/v1/secrets/{p}"), None).await;
            let expected = match (reference(world, &caller, "read", p), world.secrets.contains(p)) {
                (false, _) => (StatusCode::FORBIDDEN, "access_denied"),
                (true, true) => (StatusCode::OK, ""),
                (true, false) => (StatusCode::NOT_FOUND, "secret_not_found"),
            };
            assert_eq!((r.status, r.code()), expected, "{t} read {p}");
            if r.status == StatusCode::OK {
                assert_eq!(r.body["data"]["owner"], *t, "{t} read another tenant's value at {p}");
            }
            let r = app.as_token(&token, "GET", &format!("/v1/secrets/{p}/versions"), None).await;
            let allowed = reference(world, &caller, "list", p);
            let expected = match (allowed, world.secrets.contains(p)) {
                (false, _) => StatusCode::FORBIDDEN,
                (true, true) => StatusCode::OK,
                (true, false) => StatusCode::NOT_FOUND,
            };
            assert_eq!(r.status, expected, "{t} versions {p}");
        }
        let listed = app.as_token(&token, "GET", "/v1/secrets?limit=1000", None).await;
        let listed: BTreeSet<String> = listed.body["secrets"]
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["path"].as_str().expect("path").to_owned())
            .collect();
        let expected: BTreeSet<String> =
            world.secrets.iter().filter(|p| reference(world, &caller, "list", p)).cloned().collect();
        assert_eq!(listed, expected, "{t} list");
        // A write lands in the caller's tenant only.
        let r = app
            .as_token(
                &token,
                "PUT",
                &format!("/v1/secrets/{write_path}"),
                Some(json!({"data": {"owner": format!("writer-{t}")}})),
            )
            .await;
        if reference(world, &caller, "write", &write_path) {
            assert!(r.status.is_success(), "{t} write {write_path}: {:?}", r.body);
            let other_tenant = TENANTS[usize::from(*t == TENANTS[0])];
            let seen = app.root("GET", &format!("/v1/t/{other_tenant}/secrets/{write_path}"), None).await;
            assert_ne!(
                seen.body["data"]["owner"],
                format!("writer-{t}"),
                "a write crossed from {t} to {other_tenant}"
            );
        } else {
            assert_eq!(r.code(), "access_denied", "{t} write {write_path}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn decisions_match_the_reference_and_tenants_never_meet(
        a in world(),
        b in world(),
        probe in prop::collection::vec(path(), 0..3),
        write_path in path(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(check([a, b], probe, write_path));
    }
}
