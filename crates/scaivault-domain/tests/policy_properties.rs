//! The policy decision checked against a reference evaluator written from the rules in words: a
//! matching deny blocks, else a matching allow grants, else denied.

mod reference;

use proptest::prelude::*;
use reference::{ref_match, ref_pattern};
use scaivault_domain::{Effect, GlobPattern, Permission, Policy, PolicyRule, SecretPath, decide};

const PATTERNS: &[&str] =
    &["**", "a/**", "a/*", "a/b", "a/**/c", "*/b", "db-*", "a/db-*/**", "b/**", "a/*/c", "**/c", "x"];

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "db-main", "x"]), 1..5)
        .prop_map(|s| s.join("/"))
}

fn rule_strategy() -> impl Strategy<Value = (String, Vec<Permission>, Effect)> {
    (
        prop::sample::select(PATTERNS.to_vec()).prop_map(str::to_owned),
        prop::sample::subsequence(Permission::ALL.to_vec(), 1..=Permission::ALL.len()),
        prop_oneof![3 => Just(Effect::Allow), 1 => Just(Effect::Deny)],
    )
}

fn policies_strategy() -> impl Strategy<Value = Vec<Policy>> {
    prop::collection::vec(prop::collection::vec(rule_strategy(), 0..4), 0..5).prop_map(|policies| {
        policies
            .into_iter()
            .enumerate()
            .map(|(i, rules)| Policy {
                id: format!("pol_{i}"),
                name: format!("p{i}"),
                rules: rules
                    .into_iter()
                    .map(|(pattern, permissions, effect)| PolicyRule {
                        pattern: GlobPattern::parse(&pattern).expect("pattern"),
                        permissions,
                        effect,
                    })
                    .collect(),
            })
            .collect()
    })
}

fn reference_decision(policies: &[Policy], permission: Permission, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let applies = |r: &PolicyRule| {
        r.permissions.contains(&permission) && ref_match(&ref_pattern(r.pattern.as_str()), &segments)
    };
    let rules: Vec<&PolicyRule> = policies.iter().flat_map(|p| &p.rules).collect();
    if rules.iter().any(|r| r.effect == Effect::Deny && applies(r)) {
        return false;
    }
    rules.iter().any(|r| r.effect == Effect::Allow && applies(r))
}

proptest! {
    #[test]
    fn decisions_match_the_reference(
        policies in policies_strategy(),
        path in path_strategy(),
        permission in prop::sample::select(Permission::ALL.to_vec()),
    ) {
        let parsed = SecretPath::parse(&path).expect("path");
        let expected = reference_decision(&policies, permission, &path);
        for explain in [false, true] {
            let d = decide(&policies, permission, &parsed, explain);
            prop_assert_eq!(d.allowed, expected);
            match &d.decided_by {
                // The deciding rule really applies, and has the effect of the decision.
                Some(r) => {
                    let rule = &policies.iter().find(|p| p.id == r.policy_id).expect("policy").rules[r.rule_index];
                    prop_assert!(rule.applies(permission, &parsed));
                    prop_assert_eq!(rule.effect == Effect::Allow, d.allowed);
                }
                None => prop_assert!(!d.allowed),
            }
        }
        // Adding a policy that only denies never turns a denial into an allowance.
        let mut more = policies.clone();
        more.push(Policy { id: "pol_deny".into(), name: "deny".into(), rules: vec![PolicyRule {
            pattern: GlobPattern::parse("**").expect("pattern"), permissions: vec![permission], effect: Effect::Deny }] });
        prop_assert!(!decide(&more, permission, &parsed, false).allowed);
    }
}
