//! Records of the rotation engine: policies and the schedule of each assigned secret.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct RotationPolicyRecord {
    pub tenant: String,
    /// `rot_` + name.
    pub id: String,
    pub name: String,
    pub description: String,
    /// Durations as written (`90d`).
    pub interval: String,
    pub grace_period: String,
    /// A duration list as written (`7d,1d`), empty for none.
    pub warn_before: String,
    pub rotation_timeout: String,
    pub auto_generate: bool,
    /// The generator as JSON.
    pub generator: Option<String>,
    pub webhook_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The schedule of one secret under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRecord {
    pub tenant: String,
    pub path: String,
    pub policy_id: String,
    /// `scheduled`, `due` or `failed`.
    pub state: String,
    pub next_rotation_at: DateTime<Utc>,
    pub warned: u32,
    pub due_since: Option<DateTime<Utc>>,
    pub last_rotated_at: Option<DateTime<Utc>>,
    /// When the scheduler next has work for it; `None` while failed.
    pub wake_at: Option<DateTime<Utc>>,
    /// Bumped by every change; a change names the revision it read and applies only to it.
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A write that completes a due or failed rotation: applied in the write's transaction if the
/// schedule is still at `next.revision`, with the superseded version's grace period (the write's
/// events then include `secret.rotated`).
#[derive(Debug, Clone)]
pub struct RotationCompletion {
    pub next: AssignmentRecord,
    pub grace_until: DateTime<Utc>,
}
