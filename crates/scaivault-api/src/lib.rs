//! The JSON shapes of the ScaiVault HTTP API (`/v1`), shared by the server, the client and the CLI.
//!
//! Plain data with serde: no I/O, no behaviour, no HTTP status codes (the server alone maps
//! [`ErrorCode`] to a status). Secret values appear only in the request and response bodies that
//! carry them by design (`data`, a newly issued `token`).

mod audit;
mod error;
mod federation;
mod identity;
mod policies;
mod rotation;
mod secrets;
mod sys;
mod tokens;
mod webhooks;

pub use audit::{AuditList, AuditRecord, AuditVerification};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use federation::{
    FederationBackendList, FederationBackendRequest, FederationBackendResponse, FederationConnection,
    FederationStatus, PathMappingRule, ResolveConflictRequest, SkippedPath, SyncConflict, SyncConflictList,
    SyncReport, UpdateFederationBackendRequest,
};
pub use identity::{PartnerList, PartnerRequest, PartnerResponse, TenantList, TenantRequest, TenantResponse};
pub use policies::{
    BindingList, BindingRequest, BindingResponse, EvaluatedRule, PolicyList, PolicyRequest, PolicyResponse,
    PolicyRuleSpec, PolicyTestRequest, PolicyTestResponse, RuleReference,
};
pub use rotation::{
    AssignRotationRequest, ForceRotationRequest, ForceRotationResponse, RotationAssignment,
    RotationAssignmentList, RotationPolicyList, RotationPolicyRequest, RotationPolicyResponse, StaleReader,
    StaleReaders, UpdateRotationPolicyRequest,
};
pub use secrets::{
    DestroyRequest, DestroyResponse, PatchMetadataRequest, SecretList, SecretListItem, SecretOptions,
    SecretResponse, SecretVersionInfo, SecretVersions, SecretWritten, VersionState, WriteSecretRequest,
};
pub use sys::{Health, KeyStatusResponse, KeyVersionStatus};
pub use tokens::{CreateTokenRequest, CreatedToken, TokenInfo, TokenList, WhoAmI};
pub use webhooks::{
    CreateSubscriptionRequest, CreateWebhookRequest, DeliveryAttempt, DeliveryInfo, DeliveryList,
    RotateWebhookSecretRequest, SubscriptionDelivery, SubscriptionList, SubscriptionResponse,
    UpdateWebhookRequest, WebhookFilters, WebhookList, WebhookResponse, WebhookTestResult,
};
