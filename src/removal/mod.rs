//! The domain: a removal of members from a group, the rules that guard it, the
//! pure planner that applies them, and the engine that carries a removal out
//! against Genesys Cloud.
//!
//! Nothing here knows HTTP frameworks or SQL: the engine reaches Genesys
//! through the [`Directory`] trait and records its progress through the
//! [`Journal`] trait.

mod engine;
mod id;
pub mod plan;
mod rules;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use engine::{
    Directory, DirectoryError, Engine, EngineSettings, GroupMember, GroupSnapshot, Journal,
    MemberKind, PatchAnswer, Progress,
};
pub use id::{GroupId, InvalidId, MemberId};
pub use rules::{GroupRules, RuleBook};

/// How a removal treats members it may not remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// If any member is blocked or any rule is violated, nothing is removed.
    #[default]
    AllOrNothing,
    /// Removes what the rules allow and reports the rest as blocked.
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Rejected,
    Failed,
    Planned,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Planned => "planned",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Rejected,
            Status::Failed,
            Status::Planned,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }

    /// Finished removals never change again.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// The rules a removal is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The member holds a role listed in `protected_roles`.
    ProtectedRole,
    /// The member is listed in `protected_members`.
    ProtectedMember,
    /// Removing the member would leave the group below `min_members`.
    MinMembers,
    /// The group is listed in `protected_groups`.
    ProtectedGroup,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ProtectedRole => "protected_role",
            Rule::ProtectedMember => "protected_member",
            Rule::MinMembers => "min_members",
            Rule::ProtectedGroup => "protected_group",
        }
    }
}

/// A member the rules kept in the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Blocked {
    #[schema(value_type = String, format = Uuid)]
    pub member: MemberId,
    pub rule: Rule,
    pub detail: String,
}

/// A group-level rule that stopped the removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

/// Why Genesys Cloud could not be brought to carry out a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    GroupNotFound,
    UpstreamAuth,
    UpstreamUnavailable,
    ConflictRetriesExhausted,
    NotApplied,
    RoleLookupFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    pub code: FailureCode,
    pub detail: String,
}

/// A request to remove members from a group, and what became of it. This is
/// both the API resource and the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Removal {
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub group_id: GroupId,
    pub status: Status,
    pub dry_run: bool,
    pub mode: Mode,
    #[schema(value_type = Vec<String>)]
    pub requested_members: Vec<MemberId>,
    #[schema(value_type = Vec<String>)]
    pub removed: Vec<MemberId>,
    #[schema(value_type = Vec<String>)]
    pub not_members: Vec<MemberId>,
    pub blocked: Vec<Blocked>,
    pub violations: Vec<Violation>,
    /// Only on dry runs: the members a real run would remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub would_remove: Option<Vec<MemberId>>,
    /// PATCH cycles made.
    pub attempts: u32,
    /// Version conflicts met.
    pub conflicts: u32,
    pub error: Option<Failure>,
    /// The API client that asked.
    pub client: String,
    pub requested_by: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a caller asks for; the HTTP layer has validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalRequest {
    pub group_id: GroupId,
    /// Deduplicated, in the order asked.
    pub members: Vec<MemberId>,
    pub mode: Mode,
    pub dry_run: bool,
    pub client: String,
    pub requested_by: Option<String>,
    pub reason: Option<String>,
}

impl Removal {
    /// A new removal, queued (or running, for a dry run planned at once).
    pub fn new(request: RemovalRequest, now: DateTime<Utc>) -> Removal {
        Removal {
            id: Uuid::now_v7(),
            group_id: request.group_id,
            status: Status::Queued,
            dry_run: request.dry_run,
            mode: request.mode,
            requested_members: request.members,
            removed: Vec::new(),
            not_members: Vec::new(),
            blocked: Vec::new(),
            violations: Vec::new(),
            would_remove: None,
            attempts: 0,
            conflicts: 0,
            error: None,
            client: request.client,
            requested_by: request.requested_by,
            reason: request.reason,
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }

    /// Copies a finished outcome onto the removal.
    pub fn finish(&mut self, outcome: Outcome, now: DateTime<Utc>) {
        self.status = outcome.status;
        self.removed = outcome.removed;
        self.not_members = outcome.not_members;
        self.blocked = outcome.blocked;
        self.violations = outcome.violations;
        self.would_remove = outcome.would_remove;
        self.attempts = outcome.attempts;
        self.conflicts = outcome.conflicts;
        self.error = outcome.error;
        self.updated_at = now;
        self.completed_at = Some(now);
    }
}

/// What the engine made of a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub removed: Vec<MemberId>,
    pub not_members: Vec<MemberId>,
    pub blocked: Vec<Blocked>,
    pub violations: Vec<Violation>,
    pub would_remove: Option<Vec<MemberId>>,
    pub attempts: u32,
    pub conflicts: u32,
    pub error: Option<Failure>,
}

impl Outcome {
    /// A removal that failed before anything was done.
    pub fn failed_untouched(code: FailureCode, detail: String) -> Outcome {
        Outcome {
            status: Status::Failed,
            removed: Vec::new(),
            not_members: Vec::new(),
            blocked: Vec::new(),
            violations: Vec::new(),
            would_remove: None,
            attempts: 0,
            conflicts: 0,
            error: Some(Failure { code, detail }),
        }
    }
}
