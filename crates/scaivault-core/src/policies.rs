//! Policies, bindings, and the cache that makes a decision cost only the matching of the caller's
//! rules: each tenant's policies are compiled once per policy epoch (bumped by storage with every
//! change, and read with every token lookup), so changes made on any replica apply at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use scaivault_api::{
    BindingList, BindingRequest, BindingResponse, EvaluatedRule, PolicyList, PolicyRequest, PolicyResponse,
    PolicyRuleSpec, PolicyTestRequest, PolicyTestResponse, RuleReference,
};
use scaivault_crypto::random_id;
use scaivault_domain::{
    Decision, Effect, GlobPattern, IdentityType, Permission, Policy, PolicyRule, RuleRef, Scope, SecretPath,
    check_description, decide,
};
use scaivault_store::{BindingRecord, PolicyRecord, PolicySnapshot, StoreError};

use crate::cache::{Cache, invalidating};
use crate::paging::{decode_cursor, limit, next_cursor};
use crate::{CoreError, Principal, TokenKind, Vault};

const MAX_RULES: usize = 1000;
const MAX_NAME: usize = 128;
pub(crate) const MAX_IDENTITY: usize = 256;
/// The built-in policy of the root token. No stored policy can be it or be named like it.
const ROOT_POLICY: &str = "root";

/// An identity a policy can be bound to: `(identity_type, identity_id)`.
pub(crate) type Identity = (String, String);

/// One tenant's policies, compiled, with an index from identity to bound policies.
#[derive(Debug)]
pub(crate) struct TenantPolicies {
    epoch: i64,
    policies: Vec<Policy>,
    bound: HashMap<Identity, Vec<usize>>,
    /// `(policy, rule)` by the literal first segment of the rule's pattern, so a request looks only
    /// at rules that can match its path; rules whose pattern starts with a wildcard are kept apart.
    by_first: HashMap<String, Vec<(usize, usize)>>,
    wildcard: Vec<(usize, usize)>,
    /// Which policies an identity set holds, worked out once per set.
    holders: Mutex<HashMap<Vec<Identity>, Arc<Vec<bool>>>>,
}

/// Distinct identity sets remembered per tenant before the memo starts over.
const MAX_HOLDER_SETS: usize = 10_000;

impl TenantPolicies {
    fn compile(snapshot: PolicySnapshot) -> TenantPolicies {
        let mut policies = Vec::with_capacity(snapshot.policies.len());
        let mut index = HashMap::new();
        for record in snapshot.policies {
            match parse_stored_rules(&record.rules) {
                Ok(rules) => {
                    index.insert(record.id.clone(), policies.len());
                    policies.push(Policy { id: record.id, name: record.name, rules });
                }
                // Stored rules were validated on the way in; a row that no longer parses grants nothing.
                Err(e) => tracing::error!(policy_id = %record.id, error = %e, "stored policy does not parse"),
            }
        }
        let mut bound: HashMap<Identity, Vec<usize>> = HashMap::new();
        for b in snapshot.bindings {
            if let Some(&i) = index.get(&b.policy_id) {
                bound.entry((b.identity_type, b.identity_id)).or_default().push(i);
            }
        }
        for list in bound.values_mut() {
            list.sort_unstable();
        }
        let mut by_first: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut wildcard = Vec::new();
        for (p, policy) in policies.iter().enumerate() {
            for (r, rule) in policy.rules.iter().enumerate() {
                match rule.pattern.as_str().split('/').next() {
                    Some(first) if !first.contains('*') => {
                        by_first.entry(first.to_owned()).or_default().push((p, r))
                    }
                    _ => wildcard.push((p, r)),
                }
            }
        }
        TenantPolicies {
            epoch: snapshot.epoch,
            policies,
            bound,
            by_first,
            wildcard,
            holders: Mutex::new(HashMap::new()),
        }
    }

    fn held_by(&self, identities: &[Identity]) -> Arc<Vec<bool>> {
        let mut memo = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = memo.get(identities) {
            return held.clone();
        }
        let mut held = vec![false; self.policies.len()];
        for identity in identities {
            for &i in self.bound.get(identity).into_iter().flatten() {
                held[i] = true;
            }
        }
        let held = Arc::new(held);
        if memo.len() >= MAX_HOLDER_SETS {
            memo.clear();
        }
        memo.insert(identities.to_vec(), held.clone());
        held
    }

    /// The same answer as [`decide`] over [`Self::bound_to`], looking only at rules indexed under
    /// the path's first segment and rules that start with a wildcard.
    fn allows(&self, identities: &[Identity], permission: Permission, path: &SecretPath) -> bool {
        let held = self.held_by(identities);
        let first = path.segments().next().unwrap_or_default();
        let candidates = self.by_first.get(first).into_iter().flatten().chain(&self.wildcard);
        let mut allowed = false;
        for &(p, r) in candidates {
            if !held[p] {
                continue;
            }
            let rule = &self.policies[p].rules[r];
            if rule.applies(permission, path) {
                if rule.effect == Effect::Deny {
                    return false;
                }
                allowed = true;
            }
        }
        allowed
    }

    /// The policies bound to any of `identities`, each once, in name order, with the binding it came by.
    fn bound_to<'a>(&'a self, identities: &[Identity]) -> Vec<(&'a Policy, &'a Identity)> {
        let mut seen = vec![false; self.policies.len()];
        let mut out = Vec::new();
        for identity in identities {
            if let Some((key, list)) = self.bound.get_key_value(identity) {
                for &i in list {
                    if !std::mem::replace(&mut seen[i], true) {
                        out.push((i, key));
                    }
                }
            }
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        out.into_iter().map(|(i, key)| (&self.policies[i], key)).collect()
    }
}

fn parse_stored_rules(json: &str) -> Result<Vec<PolicyRule>, CoreError> {
    let specs: Vec<PolicyRuleSpec> =
        serde_json::from_str(json).map_err(|e| CoreError::Internal(format!("stored rules: {e}")))?;
    compile_rules(&specs)
}

fn compile_rules(specs: &[PolicyRuleSpec]) -> Result<Vec<PolicyRule>, CoreError> {
    if specs.is_empty() || specs.len() > MAX_RULES {
        return Err(CoreError::InvalidRequest(format!("a policy needs 1 to {MAX_RULES} rules")));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let bad = |what: String| CoreError::InvalidRequest(format!("rules[{i}]: {what}"));
            let pattern =
                GlobPattern::parse(&spec.path_pattern).map_err(|e| bad(format!("path_pattern: {e}")))?;
            if spec.permissions.is_empty() {
                return Err(bad("permissions must not be empty".into()));
            }
            let mut permissions = spec
                .permissions
                .iter()
                .map(|p| p.parse::<Permission>().map_err(|e| bad(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            permissions.sort_unstable();
            permissions.dedup();
            let effect = spec.effect.parse::<Effect>().map_err(|e| bad(e.to_string()))?;
            Ok(PolicyRule { pattern, permissions, effect })
        })
        .collect()
}

fn rule_specs(rules: &[PolicyRule]) -> Vec<PolicyRuleSpec> {
    rules
        .iter()
        .map(|r| PolicyRuleSpec {
            path_pattern: r.pattern.as_str().to_owned(),
            permissions: r.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            effect: r.effect.as_str().to_owned(),
        })
        .collect()
}

/// Policy names are plain ASCII (`A-Z a-z 0-9 . _ -`), compared byte for byte, so names that differ
/// only by case, spaces or look-alike characters are different names, and none can pose as `root`.
fn check_policy_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(CoreError::InvalidRequest(format!(
            "policy name must be 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ -"
        )));
    }
    if name.eq_ignore_ascii_case(ROOT_POLICY) {
        return Err(CoreError::InvalidRequest("the policy name 'root' is reserved".into()));
    }
    Ok(())
}

/// Identity ids are taken exactly as given: no trimming, no case folding, no Unicode normalisation.
/// Surrounding whitespace and control characters are refused rather than silently cleaned.
pub(crate) fn check_identity_id(id: &str) -> Result<(), CoreError> {
    let ok =
        !id.is_empty() && id.len() <= MAX_IDENTITY && !id.chars().any(char::is_control) && id.trim() == id;
    if !ok {
        return Err(CoreError::InvalidRequest(format!(
            "identity_id must be 1-{MAX_IDENTITY} characters without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

fn to_reference(r: &RuleRef) -> RuleReference {
    RuleReference {
        policy_id: r.policy_id.clone(),
        policy_name: r.policy_name.clone(),
        rule_index: r.rule_index,
        path_pattern: r.path_pattern.clone(),
        effect: r.effect.as_str().to_owned(),
    }
}

fn root_reference() -> RuleReference {
    RuleReference {
        policy_id: ROOT_POLICY.into(),
        policy_name: ROOT_POLICY.into(),
        rule_index: 0,
        path_pattern: "**".into(),
        effect: "allow".into(),
    }
}

/// What a caller may do to paths, resolved once per request.
#[derive(Debug)]
pub(crate) enum Access {
    Root,
    Policies { set: Arc<TenantPolicies>, identities: Vec<Identity> },
}

impl Access {
    /// The names of the policies this access comes from, each once.
    pub(crate) fn policy_names(&self) -> Vec<String> {
        match self {
            Access::Root => vec![ROOT_POLICY.to_owned()],
            Access::Policies { set, identities } => {
                set.bound_to(identities).into_iter().map(|(p, _)| p.name.clone()).collect()
            }
        }
    }

    pub(crate) fn allows(&self, permission: Permission, path: &SecretPath) -> bool {
        match self {
            Access::Root => true,
            Access::Policies { set, identities } => set.allows(identities, permission, path),
        }
    }

    /// Whether the caller may write the whole subtree at `mount`: the mount path itself, every
    /// path below it through one allow rule that covers it all (`mount/**` or wider), and no deny
    /// rule of its policies that could reach below it. A federation backend takes over every read
    /// and write there, so a path the caller may not write, or a deny anywhere inside, keeps it out.
    pub(crate) fn governs_subtree(&self, mount: &SecretPath) -> bool {
        let Access::Policies { set, identities } = self else { return true };
        let policies = set.bound_to(identities);
        let rules = || policies.iter().flat_map(|(policy, _)| policy.rules.iter());
        let covered = rules().any(|r| {
            r.effect == Effect::Allow
                && r.permissions.contains(&Permission::Write)
                && r.pattern.covers_below(mount)
        });
        let denied_inside = rules().any(|r| r.effect == Effect::Deny && r.pattern.may_match_below(mount));
        self.allows(Permission::Write, mount) && covered && !denied_inside
    }
}

/// The compiled policies of each tenant. An entry is used while it is at least as new as the epoch
/// the caller's token was fetched with, or, for a caller from the token cache (no epoch), while
/// the caches are on: every policy change this process makes forgets its tenant's entry, and the
/// change feed forgets those of changes made elsewhere.
#[derive(Debug)]
pub(crate) struct PolicyCache {
    tenants: Cache<String, Arc<TenantPolicies>>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        PolicyCache { tenants: Cache::new(TENANT_POLICIES) }
    }
}

const TENANT_POLICIES: usize = 4 * 1024;

impl PolicyCache {
    pub(crate) fn forget(&self, tenant: &str) {
        self.tenants.remove(&tenant.to_owned());
    }

    pub(crate) fn forget_all(&self) {
        self.tenants.clear();
    }
}

fn identities_of(identity_type: &str, identity_id: &str, groups: &[String]) -> Vec<Identity> {
    let mut out = vec![(identity_type.to_owned(), identity_id.to_owned())];
    out.extend(groups.iter().map(|g| (IdentityType::Group.as_str().to_owned(), g.clone())));
    out
}

impl Vault {
    async fn tenant_policies(
        &self,
        tenant: &str,
        epoch: Option<i64>,
    ) -> Result<Arc<TenantPolicies>, CoreError> {
        // Without an epoch (a cached token), the cached set is trusted only while the caches are on.
        let epoch = match epoch {
            Some(e) => Some(e),
            None if self.caches.enabled() => None,
            None => Some(self.store.policy_epoch(tenant).await?),
        };
        let key = tenant.to_owned();
        if let Some(set) = self.policies.tenants.get(&key)
            && epoch.is_none_or(|e| set.epoch >= e)
        {
            return Ok(set);
        }
        let ticket = self.policies.tenants.ticket();
        let set = Arc::new(TenantPolicies::compile(self.store.policy_snapshot(tenant).await?));
        self.policies.tenants.insert(ticket, key, set.clone());
        Ok(set)
    }

    /// The caller's access to paths: the root policy, or the policies bound to its identity and groups.
    pub(crate) async fn access(&self, principal: &Principal) -> Result<Access, CoreError> {
        // The root token everywhere, and an administrator acting as one of its tenants, hold the
        // built-in root policy there.
        if principal.kind == TokenKind::Root || principal.acting {
            return Ok(Access::Root);
        }
        let set = self.tenant_policies(&principal.tenant, principal.policy_epoch).await?;
        Ok(Access::Policies {
            set,
            identities: identities_of(&principal.identity_type, &principal.identity_id, &principal.groups),
        })
    }

    fn policy_response(&self, record: PolicyRecord) -> Result<PolicyResponse, CoreError> {
        let rules = parse_stored_rules(&record.rules)?;
        Ok(PolicyResponse {
            id: record.id,
            name: record.name,
            description: record.description,
            rules: rule_specs(&rules),
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }

    fn policy_record(
        &self,
        principal: &Principal,
        id: String,
        req: &PolicyRequest,
    ) -> Result<PolicyRecord, CoreError> {
        check_policy_name(&req.name)?;
        check_description(&req.description)?;
        let rules = compile_rules(&req.rules)?;
        let now = self.clock.now();
        Ok(PolicyRecord {
            tenant: principal.tenant.clone(),
            id,
            name: req.name.clone(),
            description: req.description.clone(),
            rules: serde_json::to_string(&rule_specs(&rules))
                .map_err(|e| CoreError::Internal(format!("encoding rules: {e}")))?,
            created_at: now,
            updated_at: now,
        })
    }

    fn name_taken(name: &str) -> impl FnOnce(StoreError) -> CoreError + '_ {
        move |e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("a policy named '{name}' already exists"))
            }
            StoreError::NotFound => CoreError::NotFound("policy"),
            other => other.into(),
        }
    }

    /// `POST /v1/policies`
    pub async fn create_policy(
        &self,
        principal: &Principal,
        req: PolicyRequest,
    ) -> Result<PolicyResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesWrite, None).await?;
        let record = self.policy_record(principal, random_id("pol_")?, &req)?;
        let created =
            invalidating(|| self.policies.forget(&principal.tenant), self.store.create_policy(&record)).await;
        created.map_err(Self::name_taken(&req.name))?;
        tracing::info!(policy_id = %record.id, "policy created");
        self.policy_response(record)
    }

    /// `GET /v1/policies/{id}`
    pub async fn get_policy(&self, principal: &Principal, id: &str) -> Result<PolicyResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesRead, None).await?;
        let record = self.store.get_policy(&principal.tenant, id).await.map_err(Self::name_taken(""))?;
        self.policy_response(record)
    }

    /// `GET /v1/policies`, in name order.
    pub async fn list_policies(
        &self,
        principal: &Principal,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<PolicyList, CoreError> {
        self.authorize(principal, Scope::PoliciesRead, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("policies", cursor)?;
        let records = self.store.list_policies(&principal.tenant, after.as_deref(), limit).await?;
        let next_cursor = next_cursor("policies", &records, limit, |r| r.name.clone());
        let policies = records.into_iter().map(|r| self.policy_response(r)).collect::<Result<_, _>>()?;
        Ok(PolicyList { policies, next_cursor })
    }

    /// `PUT /v1/policies/{id}`: replaces name, description and rules.
    pub async fn update_policy(
        &self,
        principal: &Principal,
        id: &str,
        req: PolicyRequest,
    ) -> Result<PolicyResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesWrite, None).await?;
        let existing = self.store.get_policy(&principal.tenant, id).await.map_err(Self::name_taken(""))?;
        let mut record = self.policy_record(principal, id.to_owned(), &req)?;
        record.created_at = existing.created_at;
        let updated =
            invalidating(|| self.policies.forget(&principal.tenant), self.store.update_policy(&record)).await;
        updated.map_err(Self::name_taken(&req.name))?;
        tracing::info!(policy_id = %id, "policy updated");
        self.policy_response(record)
    }

    /// `DELETE /v1/policies/{id}` (its bindings go with it).
    pub async fn delete_policy(&self, principal: &Principal, id: &str) -> Result<(), CoreError> {
        self.authorize(principal, Scope::PoliciesWrite, None).await?;
        let deleted = invalidating(
            || self.policies.forget(&principal.tenant),
            self.store.delete_policy(&principal.tenant, id),
        )
        .await;
        deleted.map_err(Self::name_taken(""))?;
        tracing::info!(policy_id = %id, "policy deleted");
        Ok(())
    }

    /// `POST /v1/policies/{id}/bindings`
    pub async fn create_binding(
        &self,
        principal: &Principal,
        policy_id: &str,
        req: BindingRequest,
    ) -> Result<BindingResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesWrite, None).await?;
        let identity_type: IdentityType = req
            .identity_type
            .parse()
            .map_err(|e: scaivault_domain::IdentityTypeError| CoreError::InvalidRequest(e.to_string()))?;
        check_identity_id(&req.identity_id)?;
        let record = BindingRecord {
            tenant: principal.tenant.clone(),
            id: random_id("bnd_")?,
            policy_id: policy_id.to_owned(),
            identity_type: identity_type.as_str().to_owned(),
            identity_id: req.identity_id,
            created_at: self.clock.now(),
        };
        let created =
            invalidating(|| self.policies.forget(&principal.tenant), self.store.create_binding(&record))
                .await;
        created.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict("this identity is already bound to the policy".into())
            }
            StoreError::NotFound => CoreError::NotFound("policy"),
            other => other.into(),
        })?;
        tracing::info!(policy_id = %policy_id, binding_id = %record.id, "policy bound");
        Ok(binding_response(record))
    }

    /// `GET /v1/policies/{id}/bindings`
    pub async fn list_bindings(
        &self,
        principal: &Principal,
        policy_id: &str,
        limit_param: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<BindingList, CoreError> {
        self.authorize(principal, Scope::PoliciesRead, None).await?;
        let limit = limit(limit_param)?;
        let after = decode_cursor("bindings", cursor)?;
        let records = self
            .store
            .list_bindings(&principal.tenant, policy_id, after.as_deref(), limit)
            .await
            .map_err(Self::name_taken(""))?;
        let next_cursor = next_cursor("bindings", &records, limit, |b| b.id.clone());
        Ok(BindingList { bindings: records.into_iter().map(binding_response).collect(), next_cursor })
    }

    /// `GET /v1/policies/{id}/bindings/{binding_id}`
    pub async fn get_binding(
        &self,
        principal: &Principal,
        policy_id: &str,
        binding_id: &str,
    ) -> Result<BindingResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesRead, None).await?;
        match self.store.get_binding(&principal.tenant, policy_id, binding_id).await {
            Ok(record) => Ok(binding_response(record)),
            Err(StoreError::NotFound) => Err(CoreError::NotFound("binding")),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /v1/policies/{id}/bindings/{binding_id}`
    pub async fn delete_binding(
        &self,
        principal: &Principal,
        policy_id: &str,
        binding_id: &str,
    ) -> Result<(), CoreError> {
        self.authorize(principal, Scope::PoliciesWrite, None).await?;
        let deleted = invalidating(
            || self.policies.forget(&principal.tenant),
            self.store.delete_binding(&principal.tenant, policy_id, binding_id),
        )
        .await;
        deleted.map_err(|e| match e {
            StoreError::NotFound => CoreError::NotFound("binding"),
            other => other.into(),
        })?;
        tracing::info!(policy_id = %policy_id, binding_id = %binding_id, "policy unbound");
        Ok(())
    }

    /// `POST /v1/policies/test`: the decision for the caller, or for a named identity and groups,
    /// with the rule that made it and every rule considered.
    pub async fn test_policy(
        &self,
        principal: &Principal,
        req: PolicyTestRequest,
    ) -> Result<PolicyTestResponse, CoreError> {
        self.authorize(principal, Scope::PoliciesRead, None).await?;
        let path = SecretPath::parse(&req.path)?;
        let permission: Permission = req
            .permission
            .parse()
            .map_err(|e: scaivault_domain::PermissionError| CoreError::InvalidRequest(e.to_string()))?;
        let named = req.identity_type.is_some() || req.identity_id.is_some() || req.groups.is_some();
        // The caller's own access, when it holds the built-in root policy (as `access` decides).
        if !named && (principal.kind == TokenKind::Root || principal.acting) {
            let by = root_reference();
            let holder =
                if principal.acting { "an administrator acting as this tenant" } else { "the root token" };
            return Ok(PolicyTestResponse {
                allowed: true,
                explanation: format!("allowed by the built-in root policy of {holder}"),
                evaluated: vec![EvaluatedRule {
                    rule: by.clone(),
                    bound_via: ROOT_POLICY.into(),
                    matched: true,
                }],
                decided_by: Some(by),
            });
        }
        let identities = if named {
            let identity_type = req.identity_type.as_deref().unwrap_or(IdentityType::ServiceAccount.as_str());
            let identity_type: IdentityType = identity_type
                .parse()
                .map_err(|e: scaivault_domain::IdentityTypeError| CoreError::InvalidRequest(e.to_string()))?;
            let identity_id = req.identity_id.as_deref().unwrap_or_default();
            if identity_type == IdentityType::Group {
                identities_of(identity_type.as_str(), identity_id, &[])
            } else {
                check_identity_id(identity_id)?;
                identities_of(identity_type.as_str(), identity_id, req.groups.as_deref().unwrap_or_default())
            }
        } else {
            identities_of(&principal.identity_type, &principal.identity_id, &principal.groups)
        };
        let set = self.tenant_policies(&principal.tenant, None).await?;
        let bound = set.bound_to(&identities);
        let decision: Decision = decide(bound.iter().map(|(p, _)| *p), permission, &path, true);
        let via: HashMap<&str, String> =
            bound.iter().map(|(p, (t, i))| (p.id.as_str(), format!("{t}:{i}"))).collect();
        let explanation = match (&decision.decided_by, decision.allowed) {
            (Some(r), true) => format!(
                "allowed by rule {} ('{}') of policy '{}'",
                r.rule_index, r.path_pattern, r.policy_name
            ),
            (Some(r), false) => format!(
                "denied by deny rule {} ('{}') of policy '{}'",
                r.rule_index, r.path_pattern, r.policy_name
            ),
            (None, _) if bound.is_empty() => {
                "denied: no policy is bound to this identity or its groups".into()
            }
            (None, _) => format!(
                "denied: no rule of the {} bound policies matches '{permission}' on this path",
                bound.len()
            ),
        };
        Ok(PolicyTestResponse {
            allowed: decision.allowed,
            decided_by: decision.decided_by.as_ref().map(to_reference),
            evaluated: decision
                .evaluated
                .iter()
                .map(|o| EvaluatedRule {
                    rule: to_reference(&o.rule),
                    bound_via: via.get(o.rule.policy_id.as_str()).cloned().unwrap_or_default(),
                    matched: o.matched,
                })
                .collect(),
            explanation,
        })
    }
}

fn binding_response(b: BindingRecord) -> BindingResponse {
    BindingResponse {
        id: b.id,
        policy_id: b.policy_id,
        identity_type: b.identity_type,
        identity_id: b.identity_id,
        created_at: b.created_at,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use proptest::prelude::*;

    use super::*;

    const PATTERNS: [&str; 10] = ["**", "a/**", "a/*", "a/b", "*/c", "db-*", "b/**/c", "a/db-*", "c", "*"];
    const WORDS: [&str; 4] = ["a", "b", "c", "db-x"];

    fn snapshot(
        policies: &[Vec<(usize, Vec<Permission>, bool)>],
        bindings: &[(usize, usize)],
    ) -> PolicySnapshot {
        let identity = |i: usize| match i {
            0 => ("service_account".to_owned(), "sa:one".to_owned()),
            1 => ("group".to_owned(), "ops".to_owned()),
            _ => ("user".to_owned(), "u".to_owned()),
        };
        PolicySnapshot {
            epoch: 1,
            policies: policies
                .iter()
                .enumerate()
                .map(|(i, rules)| {
                    let specs: Vec<PolicyRuleSpec> = rules
                        .iter()
                        .map(|(pattern, perms, deny)| PolicyRuleSpec {
                            path_pattern: PATTERNS[*pattern].into(),
                            permissions: perms.iter().map(|p| p.as_str().to_owned()).collect(),
                            effect: if *deny { "deny" } else { "allow" }.into(),
                        })
                        .collect();
                    PolicyRecord {
                        tenant: "t".into(),
                        id: format!("pol_{i}"),
                        name: format!("p{i:02}"),
                        description: String::new(),
                        rules: serde_json::to_string(&specs).expect("json"),
                        created_at: Utc::now(),
                        updated_at: Utc::now(),
                    }
                })
                .collect(),
            bindings: bindings
                .iter()
                .enumerate()
                .map(|(n, (policy, who))| BindingRecord {
                    tenant: "t".into(),
                    id: format!("bnd_{n}"),
                    policy_id: format!("pol_{policy}"),
                    identity_type: identity(*who).0,
                    identity_id: identity(*who).1,
                    created_at: Utc::now(),
                })
                .collect(),
        }
    }

    proptest! {
        /// The indexed evaluation answers exactly as the plain decision over the bound policies.
        #[test]
        fn indexed_evaluation_equals_the_plain_decision(
            policies in prop::collection::vec(
                prop::collection::vec(
                    (0..PATTERNS.len(), prop::sample::subsequence(Permission::ALL.to_vec(), 1..=5), prop::bool::weighted(0.3)),
                    1..4),
                0..6),
            bindings in prop::collection::vec((0usize..6, 0usize..3), 0..8),
            path in prop::collection::vec(prop::sample::select(WORDS.to_vec()), 1..4),
            permission in prop::sample::select(Permission::ALL.to_vec()),
        ) {
            let bindings: Vec<_> = bindings.into_iter().filter(|(p, _)| *p < policies.len()).collect();
            let set = TenantPolicies::compile(snapshot(&policies, &bindings));
            let path = SecretPath::parse(&path.join("/")).expect("path");
            let caller = identities_of("service_account", "sa:one", &["ops".to_owned()]);
            let plain = decide(set.bound_to(&caller).iter().map(|(p, _)| *p), permission, &path, false).allowed;
            prop_assert_eq!(set.allows(&caller, permission, &path), plain);
            // Asked twice (the memo answers the second time), the same.
            prop_assert_eq!(set.allows(&caller, permission, &path), plain);
        }
    }
}
