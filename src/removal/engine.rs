//! The engine: carries one removal out against the directory.
//!
//! A cycle reads the group, plans against what it read, records what the PATCH
//! will carry, PATCHes with `If-Match`, and checks the answer. A version
//! conflict starts a new cycle, so every rule is checked again against the
//! fresh members before anything else is sent.
//!
//! The intent recorded before each PATCH is what makes crashes and ambiguous
//! answers (timeouts, 5xx) safe: the next read settles it, and members it named
//! that are gone by then are reported `removed`.

use std::future::Future;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::plan::{self, KnownRoles, Plan, Verdict};
use super::{
    Blocked, Failure, FailureCode, GroupId, MemberId, Outcome, Removal, RuleBook, Status, Violation,
};

/// A group as read at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The version as received (the ETag, else `meta.version`), sent back in
    /// `If-Match` unchanged.
    pub version: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub id: MemberId,
    pub kind: MemberKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    User,
    /// A nested group: it counts toward `min_members` and holds no roles.
    Group,
}

/// What a successful PATCH answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchAnswer {
    /// The group after the change.
    Group(GroupSnapshot),
    /// A 2xx without the group's members (204, or a trimmed body).
    Accepted,
}

/// Why the directory could not do what was asked. The client has already
/// retried what is worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("the group does not exist")]
    GroupNotFound,
    /// The PATCH was refused whole for its `If-Match` (or a member it named
    /// was gone): nothing of it was applied.
    #[error("the group's version changed: {0}")]
    Conflict(String),
    /// As [`DirectoryError::Conflict`], but an earlier try of the same PATCH
    /// went unanswered (a timeout, a 5xx, a dropped connection) and may have
    /// been applied, which would explain the new version.
    #[error("the group's version changed, perhaps by our own unanswered try: {0}")]
    ConflictAfterLostAnswer(String),
    #[error("Genesys Cloud refused our credentials or permissions: {0}")]
    Auth(String),
    #[error("Genesys Cloud is unavailable: {0}")]
    Unavailable(String),
    #[error("Genesys Cloud rejected the change: {0}")]
    Rejected(String),
}

/// Genesys Cloud as the engine sees it.
pub trait Directory: Send + Sync + 'static {
    fn read_group(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<GroupSnapshot, DirectoryError>> + Send;

    /// The member's role names; a user that does not exist has none.
    fn roles_of(
        &self,
        member: &MemberId,
    ) -> impl Future<Output = Result<Vec<String>, DirectoryError>> + Send;

    /// Removes `members` (never empty) in one PATCH guarded by `version`.
    /// A stale version is [`DirectoryError::Conflict`], or
    /// [`DirectoryError::ConflictAfterLostAnswer`] when an earlier try of this
    /// PATCH went unanswered.
    fn remove_members(
        &self,
        group: &GroupId,
        version: &str,
        members: &[MemberId],
    ) -> impl Future<Output = Result<PatchAnswer, DirectoryError>> + Send;
}

/// Where the engine records its progress before each PATCH.
pub trait Journal: Send + Sync {
    fn save_progress(
        &self,
        progress: &Progress,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send;
}

/// What a removal has done so far; saved before each PATCH and after each
/// answer, and handed back to the engine when a removal resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub removed: Vec<MemberId>,
    /// The PATCH sent last, until a read shows what became of it.
    pub intent: Option<PatchIntent>,
    pub attempts: u32,
    pub conflicts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchIntent {
    pub members: Vec<MemberId>,
    pub version: String,
}

impl Progress {
    /// Members of the pending intent that `group` no longer holds were removed
    /// by that PATCH. Returns whether anything changed.
    fn settle(&mut self, group: &GroupSnapshot) -> bool {
        let Some(intent) = self.intent.take() else {
            return false;
        };
        let still = Plan::still_present(&intent.members, &group.members);
        let gone = intent
            .members
            .iter()
            .filter(|member| !still.contains(member));
        self.removed.extend(gone.cloned());
        true
    }
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub max_conflict_retries: u32,
    pub max_operations_per_patch: usize,
}

pub struct Engine<D> {
    directory: D,
    rules: RuleBook,
    settings: EngineSettings,
}

/// How a cycle ended when it did not end the removal.
enum Next {
    Cycle,
    Finish(Outcome),
}

impl<D: Directory> Engine<D> {
    pub fn new(directory: D, rules: RuleBook, settings: EngineSettings) -> Engine<D> {
        Engine {
            directory,
            rules,
            settings,
        }
    }

    pub fn rules(&self) -> &RuleBook {
        &self.rules
    }

    /// Carries `removal` out (or, for a dry run, plans it), resuming from
    /// `progress`.
    ///
    /// # Errors
    /// Only when the journal cannot save progress: the removal is then left
    /// unfinished, to be resumed, because a PATCH must never go out unrecorded.
    pub async fn run(
        &self,
        removal: &Removal,
        mut progress: Progress,
        journal: &impl Journal,
    ) -> Result<Outcome, anyhow::Error> {
        let rules = self.rules.for_group(&removal.group_id);

        if rules.group_protected {
            let violation = Violation {
                rule: super::Rule::ProtectedGroup,
                detail: "the group is listed in protected_groups".into(),
            };
            let plan = Plan {
                violations: vec![violation],
                ..Plan::default()
            };
            return Ok(finish(Status::Rejected, &plan, progress, None));
        }

        let mut roles = KnownRoles::new();
        loop {
            let next = self
                .cycle(removal, &rules, &mut roles, &mut progress, journal)
                .await?;
            if let Next::Finish(outcome) = next {
                return Ok(outcome);
            }
        }
    }

    async fn cycle(
        &self,
        removal: &Removal,
        rules: &super::GroupRules,
        roles: &mut KnownRoles,
        progress: &mut Progress,
        journal: &impl Journal,
    ) -> Result<Next, anyhow::Error> {
        let group_id = &removal.group_id;

        // Read, and settle what an earlier PATCH (or process) left pending.
        let group = match self.directory.read_group(group_id).await {
            Ok(group) => group,
            Err(error) => return Ok(Next::Finish(failed(progress.clone(), &error))),
        };
        if progress.settle(&group) {
            journal.save_progress(progress).await?;
        }

        // Plan against this version, looking roles up as the planner asks.
        let remaining: Vec<MemberId> = removal
            .requested_members
            .iter()
            .filter(|member| !progress.removed.contains(member))
            .cloned()
            .collect();
        let plan = loop {
            let plan = plan::plan(&remaining, &group, rules, roles, removal.mode);
            if plan.needs_roles.is_empty() {
                break plan;
            }
            if let Err(failure) = self.look_up_roles(&plan.needs_roles, roles).await {
                return Ok(Next::Finish(finish(
                    Status::Failed,
                    &plan,
                    progress.clone(),
                    Some(failure),
                )));
            }
        };

        match plan.verdict(removal.mode, progress.removed.len()) {
            Verdict::Reject if progress.removed.is_empty() => {
                return Ok(Next::Finish(finish(
                    Status::Rejected,
                    &plan,
                    progress.clone(),
                    None,
                )));
            }
            Verdict::Reject => {
                // Only a removal split over several PATCHes gets here: a rule
                // stopped a later part after an earlier one was applied.
                let failure = Failure {
                    code: FailureCode::NotApplied,
                    detail: "a rule stopped the rest after part was removed".into(),
                };
                return Ok(Next::Finish(finish(
                    Status::Failed,
                    &plan,
                    progress.clone(),
                    Some(failure),
                )));
            }
            Verdict::Done => {
                let status = if removal.dry_run {
                    Status::Planned
                } else {
                    Status::Succeeded
                };
                let mut outcome = finish(status, &plan, progress.clone(), None);
                if removal.dry_run {
                    outcome.would_remove = Some(Vec::new());
                }
                return Ok(Next::Finish(outcome));
            }
            Verdict::Remove if removal.dry_run => {
                let mut outcome = finish(Status::Planned, &plan, progress.clone(), None);
                outcome.would_remove = Some(plan.to_remove.clone());
                return Ok(Next::Finish(outcome));
            }
            Verdict::Remove => {}
        }

        // Record what the PATCH will carry before sending it.
        let batch_len = plan
            .to_remove
            .len()
            .min(self.settings.max_operations_per_patch);
        let batch = plan.to_remove[..batch_len].to_vec();
        progress.intent = Some(PatchIntent {
            members: batch.clone(),
            version: group.version.clone(),
        });
        progress.attempts += 1;
        journal.save_progress(progress).await?;
        debug!(members = batch.len(), version = %group.version, "patching group");

        let answer = self
            .directory
            .remove_members(group_id, &group.version, &batch)
            .await;
        let after = match answer {
            Ok(super::PatchAnswer::Group(after)) => after,
            Ok(super::PatchAnswer::Accepted) => match self.directory.read_group(group_id).await {
                Ok(after) => after,
                Err(error) => return Ok(Next::Finish(failed(progress.clone(), &error))),
            },
            Err(
                error @ (DirectoryError::Conflict(_) | DirectoryError::ConflictAfterLostAnswer(_)),
            ) => {
                // A PATCH refused whole removed nothing: forget its intent, or
                // the next read would credit us with what others removed. One
                // whose earlier try went unanswered keeps it for that read.
                progress.conflicts += 1;
                if matches!(error, DirectoryError::Conflict(_)) {
                    progress.intent = None;
                    journal.save_progress(progress).await?;
                }
                info!(conflicts = progress.conflicts, %error, "version conflict, reading again");
                if progress.conflicts > self.settings.max_conflict_retries {
                    let failure = Failure {
                        code: FailureCode::ConflictRetriesExhausted,
                        detail: format!("{} version conflicts in a row", progress.conflicts),
                    };
                    let outcome = self.settled_failure(group_id, progress, failure).await;
                    return Ok(Next::Finish(outcome));
                }
                return Ok(Next::Cycle);
            }
            Err(error) => {
                warn!(%error, "patch failed");
                let failure = failure_of(&error);
                return Ok(Next::Finish(
                    self.settled_failure(group_id, progress, failure).await,
                ));
            }
        };

        // Verify: a member is removed only when the group no longer holds it.
        progress.settle(&after);
        journal.save_progress(progress).await?;
        let still = Plan::still_present(&batch, &after.members);
        if !still.is_empty() {
            let failure = Failure {
                code: FailureCode::NotApplied,
                detail: format!(
                    "Genesys Cloud answered success but {} member(s) are still in the group",
                    still.len()
                ),
            };
            return Ok(Next::Finish(finish(
                Status::Failed,
                &plan,
                progress.clone(),
                Some(failure),
            )));
        }

        if batch_len == plan.to_remove.len() {
            return Ok(Next::Finish(finish(
                Status::Succeeded,
                &plan,
                progress.clone(),
                None,
            )));
        }
        Ok(Next::Cycle)
    }

    /// Looks up, concurrently, the roles the planner asked for.
    async fn look_up_roles(
        &self,
        members: &[MemberId],
        roles: &mut KnownRoles,
    ) -> Result<(), Failure> {
        let answers = join_all(members.iter().map(|member| self.directory.roles_of(member))).await;

        for (member, answer) in members.iter().zip(answers) {
            match answer {
                Ok(held) => {
                    roles.insert(member.clone(), held);
                }
                Err(error) => {
                    // Never treated as "no roles": that could remove an admin.
                    let code = match error {
                        DirectoryError::Auth(_) => FailureCode::UpstreamAuth,
                        _ => FailureCode::RoleLookupFailed,
                    };
                    return Err(Failure {
                        code,
                        detail: format!("role look-up for member {member} failed: {error}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// A failure after a PATCH whose fate is unknown: one more read, if it
    /// answers, tells which of its members were removed.
    async fn settled_failure(
        &self,
        group: &GroupId,
        progress: &mut Progress,
        failure: Failure,
    ) -> Outcome {
        if progress.intent.is_some() {
            match self.directory.read_group(group).await {
                Ok(after) => {
                    progress.settle(&after);
                }
                Err(error) => warn!(%error, "could not read the group to settle the last patch"),
            }
        }
        finish(
            Status::Failed,
            &Plan::default(),
            progress.clone(),
            Some(failure),
        )
    }
}

fn failure_of(error: &DirectoryError) -> Failure {
    let code = match error {
        DirectoryError::GroupNotFound => FailureCode::GroupNotFound,
        DirectoryError::Auth(_) => FailureCode::UpstreamAuth,
        DirectoryError::Unavailable(_) => FailureCode::UpstreamUnavailable,
        DirectoryError::Conflict(_) | DirectoryError::ConflictAfterLostAnswer(_) => {
            FailureCode::ConflictRetriesExhausted
        }
        DirectoryError::Rejected(_) => FailureCode::NotApplied,
    };
    Failure {
        code,
        detail: error.to_string(),
    }
}

fn failed(progress: Progress, error: &DirectoryError) -> Outcome {
    finish(
        Status::Failed,
        &Plan::default(),
        progress,
        Some(failure_of(error)),
    )
}

fn finish(status: Status, plan: &Plan, progress: Progress, error: Option<Failure>) -> Outcome {
    let blocked: Vec<Blocked> = plan.blocked.clone();
    Outcome {
        status,
        removed: progress.removed,
        not_members: plan.not_members.clone(),
        blocked,
        violations: plan.violations.clone(),
        would_remove: None,
        attempts: progress.attempts,
        conflicts: progress.conflicts,
        error,
    }
}

#[cfg(test)]
mod tests;
