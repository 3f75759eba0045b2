use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One rule as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleSpec {
    pub path_pattern: String,
    pub permissions: Vec<String>,
    /// `allow` (the default) or `deny`.
    #[serde(default = "default_effect")]
    pub effect: String,
}

fn default_effect() -> String {
    "allow".to_owned()
}

/// `POST /v1/policies` and `PUT /v1/policies/{id}`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<PolicyRuleSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyResponse {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: Vec<PolicyRuleSpec>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyResponse>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/policies/{id}/bindings`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    pub identity_type: String,
    pub identity_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BindingResponse {
    pub id: String,
    pub policy_id: String,
    pub identity_type: String,
    pub identity_id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BindingList {
    pub bindings: Vec<BindingResponse>,
    pub next_cursor: Option<String>,
}

/// `POST /v1/policies/test`: the caller, unless an identity is named.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestRequest {
    pub path: String,
    pub permission: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// A rule named in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleReference {
    pub policy_id: String,
    pub policy_name: String,
    pub rule_index: usize,
    pub path_pattern: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvaluatedRule {
    #[serde(flatten)]
    pub rule: RuleReference,
    /// Through which binding the policy applies (`service_account:sa:x`, `group:ops`, or `root`).
    pub bound_via: String,
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PolicyTestResponse {
    pub allowed: bool,
    /// The rule that decided; `null` when nothing matched (so denied).
    pub decided_by: Option<RuleReference>,
    pub evaluated: Vec<EvaluatedRule>,
    /// In words, for people: what allowed or blocked, or that nothing matched.
    pub explanation: String,
}
