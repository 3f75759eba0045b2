//! Policy rules and the one decision procedure: a matching `deny` beats any `allow`, and nothing
//! matching means denied. Pure, so the server, `policies/test` and the property tests agree.

use crate::{GlobPattern, Permission, SecretPath};

string_enum! {
    /// Whether a matching rule grants or blocks.
    pub enum Effect {
        Allow => "allow",
        Deny => "deny",
    }
    /// A string that is not an effect.
    pub enum EffectError => "effect";
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub pattern: GlobPattern,
    pub permissions: Vec<Permission>,
    pub effect: Effect,
}

/// A policy as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub rules: Vec<PolicyRule>,
}

/// Which rule of which policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub policy_id: String,
    pub policy_name: String,
    pub rule_index: usize,
    pub path_pattern: String,
    pub effect: Effect,
}

/// A rule considered by [`decide`] and whether it applied to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule: RuleRef,
    /// The pattern matched the path and the rule names the permission.
    pub matched: bool,
}

/// The answer, with the rule that decided it (`None`: nothing matched, so denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub decided_by: Option<RuleRef>,
    /// Every rule considered, in order, when an explanation was asked for; empty otherwise.
    pub evaluated: Vec<RuleOutcome>,
}

fn rule_ref(policy: &Policy, index: usize, rule: &PolicyRule) -> RuleRef {
    RuleRef {
        policy_id: policy.id.clone(),
        policy_name: policy.name.clone(),
        rule_index: index,
        path_pattern: rule.pattern.as_str().to_owned(),
        effect: rule.effect,
    }
}

impl PolicyRule {
    pub fn applies(&self, permission: Permission, path: &SecretPath) -> bool {
        self.permissions.contains(&permission) && self.pattern.matches(path)
    }
}

/// Decides `permission` on `path` under `policies`. The first matching deny (in the order given)
/// decides a denial; otherwise the first matching allow decides an allowance.
pub fn decide<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    permission: Permission,
    path: &SecretPath,
    explain: bool,
) -> Decision {
    let mut first_allow = None;
    let mut first_deny = None;
    let mut evaluated = Vec::new();
    for policy in policies {
        for (index, rule) in policy.rules.iter().enumerate() {
            let matched = rule.applies(permission, path);
            if explain {
                evaluated.push(RuleOutcome { rule: rule_ref(policy, index, rule), matched });
            }
            if !matched {
                continue;
            }
            match rule.effect {
                Effect::Deny if first_deny.is_none() => {
                    first_deny = Some(rule_ref(policy, index, rule));
                    if !explain {
                        return Decision { allowed: false, decided_by: first_deny, evaluated };
                    }
                }
                Effect::Allow if first_allow.is_none() => first_allow = Some(rule_ref(policy, index, rule)),
                _ => {}
            }
        }
    }
    match (first_deny, first_allow) {
        (Some(deny), _) => Decision { allowed: false, decided_by: Some(deny), evaluated },
        (None, Some(allow)) => Decision { allowed: true, decided_by: Some(allow), evaluated },
        (None, None) => Decision { allowed: false, decided_by: None, evaluated },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, perms: &[Permission], effect: Effect) -> PolicyRule {
        PolicyRule { pattern: GlobPattern::parse(pattern).unwrap(), permissions: perms.to_vec(), effect }
    }

    fn policy(name: &str, rules: Vec<PolicyRule>) -> Policy {
        Policy { id: format!("pol_{name}"), name: name.into(), rules }
    }

    fn check(policies: &[Policy], perm: Permission, path: &str, allowed: bool, by: Option<(&str, usize)>) {
        let p = SecretPath::parse(path).unwrap();
        for explain in [false, true] {
            let d = decide(policies, perm, &p, explain);
            assert_eq!(d.allowed, allowed, "{perm} {path}");
            assert_eq!(
                d.decided_by.as_ref().map(|r| (r.policy_name.as_str(), r.rule_index)),
                by,
                "{perm} {path}"
            );
            assert_eq!(d.evaluated.is_empty(), !explain || policies.iter().all(|p| p.rules.is_empty()));
        }
    }

    #[test]
    fn seed_flows() {
        use Permission::*;
        let billing = policy(
            "billing-prod-reader",
            vec![rule("environments/production/billing/**", &[Read], Effect::Allow)],
        );
        let one = policy("sf", vec![rule("integrations/salesforce/oauth", &[Read], Effect::Allow)]);
        let all = [billing, one];
        check(&all, Read, "environments/production/billing/db", true, Some(("billing-prod-reader", 0)));
        check(&all, Read, "environments/production/billing/a/b/c", true, Some(("billing-prod-reader", 0)));
        check(&all, Read, "environments/staging/billing/db", false, None);
        check(&all, Write, "environments/production/billing/db", false, None);
        check(&all, Read, "integrations/salesforce/oauth", true, Some(("sf", 0)));
        check(&all, Read, "integrations/salesforce/other", false, None);
    }

    #[test]
    fn deny_beats_allow_in_any_order() {
        use Permission::*;
        let allow = policy("allow", vec![rule("app/**", &[Read, List], Effect::Allow)]);
        let deny = policy("deny", vec![rule("app/secret/*", &[Read], Effect::Deny)]);
        for order in [[allow.clone(), deny.clone()], [deny.clone(), allow.clone()]] {
            check(&order, Read, "app/secret/key", false, Some(("deny", 0)));
            check(&order, List, "app/secret/key", true, Some(("allow", 0)));
            check(&order, Read, "app/public", true, Some(("allow", 0)));
        }
    }

    #[test]
    fn nothing_bound_denies() {
        check(&[], Permission::Read, "a", false, None);
        check(&[policy("empty", vec![])], Permission::Read, "a", false, None);
    }
}
