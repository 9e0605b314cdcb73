//! The engine against an in-memory directory whose answers a test scripts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::*;
use crate::config::ConstraintSettings;
use crate::removal::{Mode, RemovalRequest, Rule};

fn id(n: u8) -> MemberId {
    MemberId::parse(&format!("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b{n:02x}")).unwrap()
}

fn group_id() -> GroupId {
    GroupId::parse("0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01").unwrap()
}

/// What the fake directory does on its next PATCH instead of applying it.
#[derive(Debug, Clone)]
enum Fault {
    /// Another administrator removes this member and bumps the version first.
    OtherAdminRemoves(u8),
    /// Applies the PATCH but answers without the group.
    AnswerWithoutBody,
    /// Answers success without applying anything.
    LieAboutSuccess,
    /// Applies the PATCH, then the answer is lost (a timeout).
    ApplyThenFail,
    /// Applies the PATCH, its answer is lost, and the client's retry is
    /// refused for the version the first try made.
    ApplyThenRetryConflicts,
    Conflict,
}

#[derive(Debug, Default)]
struct State {
    members: Vec<MemberId>,
    version: u64,
    roles: Vec<(MemberId, Vec<String>)>,
    role_lookup_fails: bool,
    faults: VecDeque<Fault>,
    reads: usize,
    role_lookups: usize,
    patches: Vec<(String, Vec<MemberId>)>,
}

#[derive(Clone, Default)]
struct FakeDirectory(Arc<Mutex<State>>);

impl FakeDirectory {
    fn with_members(ns: &[u8]) -> FakeDirectory {
        let directory = FakeDirectory::default();
        {
            let mut state = directory.0.lock().unwrap();
            state.members = ns.iter().map(|n| id(*n)).collect();
            state.version = 1;
        }
        directory
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn snapshot(state: &State) -> GroupSnapshot {
        GroupSnapshot {
            version: format!("\"{}\"", state.version),
            members: state
                .members
                .iter()
                .map(|member| GroupMember {
                    id: member.clone(),
                    kind: MemberKind::User,
                })
                .collect(),
        }
    }
}

impl Directory for FakeDirectory {
    async fn read_group(&self, _group: &GroupId) -> Result<GroupSnapshot, DirectoryError> {
        let mut state = self.state();
        state.reads += 1;
        Ok(FakeDirectory::snapshot(&state))
    }

    async fn roles_of(&self, member: &MemberId) -> Result<Vec<String>, DirectoryError> {
        let mut state = self.state();
        state.role_lookups += 1;
        if state.role_lookup_fails {
            return Err(DirectoryError::Unavailable("503".into()));
        }
        let held = state
            .roles
            .iter()
            .find(|(m, _)| m == member)
            .map(|(_, r)| r.clone());
        Ok(held.unwrap_or_default())
    }

    async fn remove_members(
        &self,
        _group: &GroupId,
        version: &str,
        members: &[MemberId],
    ) -> Result<PatchAnswer, DirectoryError> {
        let mut state = self.state();
        state.patches.push((version.to_string(), members.to_vec()));

        let fault = state.faults.pop_front();
        if let Some(Fault::OtherAdminRemoves(n)) = &fault {
            state.members.retain(|member| *member != id(*n));
            state.version += 1;
        }
        if matches!(fault, Some(Fault::Conflict)) {
            state.version += 1;
        }
        if version != format!("\"{}\"", state.version) {
            return Err(DirectoryError::Conflict("412".into()));
        }
        if matches!(fault, Some(Fault::LieAboutSuccess)) {
            return Ok(PatchAnswer::Group(FakeDirectory::snapshot(&state)));
        }

        state.members.retain(|member| !members.contains(member));
        state.version += 1;
        match fault {
            Some(Fault::AnswerWithoutBody) => Ok(PatchAnswer::Accepted),
            Some(Fault::ApplyThenFail) => Err(DirectoryError::Unavailable("timeout".into())),
            Some(Fault::ApplyThenRetryConflicts) => {
                Err(DirectoryError::ConflictAfterLostAnswer("412".into()))
            }
            _ => Ok(PatchAnswer::Group(FakeDirectory::snapshot(&state))),
        }
    }
}

/// Keeps every progress the engine saves, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<Progress>>);

impl Journal for Recorder {
    async fn save_progress(&self, progress: &Progress) -> Result<(), anyhow::Error> {
        self.0.lock().unwrap().push(progress.clone());
        Ok(())
    }
}

fn constraints(min_members: usize) -> ConstraintSettings {
    ConstraintSettings {
        min_members,
        max_removals_per_request: 100,
        ..ConstraintSettings::default()
    }
}

fn engine(directory: &FakeDirectory, constraints: ConstraintSettings) -> Engine<FakeDirectory> {
    let settings = EngineSettings {
        max_conflict_retries: 3,
        max_operations_per_patch: 100,
    };
    Engine::new(directory.clone(), RuleBook::new(&constraints), settings)
}

fn removal(members: &[u8], mode: Mode, dry_run: bool) -> Removal {
    let request = RemovalRequest {
        group_id: group_id(),
        members: members.iter().map(|n| id(*n)).collect(),
        mode,
        dry_run,
        client: "test".into(),
        requested_by: None,
        reason: None,
    };
    Removal::new(request, Utc::now())
}

/// Runs `removal` once from scratch with a journal nobody reads.
async fn run(
    directory: &FakeDirectory,
    constraints: ConstraintSettings,
    removal: Removal,
) -> Outcome {
    let journal = Recorder::default();
    engine(directory, constraints)
        .run(&removal, Progress::default(), &journal)
        .await
        .unwrap()
}

fn ids(ns: &[u8]) -> Vec<MemberId> {
    ns.iter().map(|n| id(*n)).collect()
}

#[tokio::test]
async fn removes_the_members_in_one_patch_guarded_by_the_version_read() {
    let directory = FakeDirectory::with_members(&[1, 2, 3, 4]);
    let journal = Recorder::default();

    let outcome = engine(&directory, constraints(1))
        .run(
            &removal(&[1, 2, 9], Mode::AllOrNothing, false),
            Progress::default(),
            &journal,
        )
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1, 2]));
    assert_eq!(outcome.not_members, ids(&[9]));
    assert_eq!(outcome.attempts, 1);
    let state = directory.state();
    assert_eq!(state.patches, vec![("\"1\"".to_string(), ids(&[1, 2]))]);
    assert_eq!(state.members, ids(&[3, 4]));
    assert_eq!(state.reads, 1, "the PATCH answer is the verification");
}

#[tokio::test]
async fn the_intent_is_recorded_before_the_patch_goes_out() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    let journal = Recorder::default();

    engine(&directory, constraints(1))
        .run(
            &removal(&[1], Mode::AllOrNothing, false),
            Progress::default(),
            &journal,
        )
        .await
        .unwrap();

    let saved = journal.0.lock().unwrap();
    let intent = saved[0]
        .intent
        .as_ref()
        .expect("first save carries the intent");
    assert_eq!(intent.members, ids(&[1]));
    assert_eq!(intent.version, "\"1\"");
    assert_eq!(saved.last().unwrap().removed, ids(&[1]));
}

#[tokio::test]
async fn a_conflict_reads_again_and_checks_the_rules_against_the_fresh_members() {
    // Another administrator removes member 3 between our read and our PATCH:
    // removing 1 and 2 as well would now leave one member, below the minimum.
    let directory = FakeDirectory::with_members(&[1, 2, 3, 4]);
    directory
        .state()
        .faults
        .push_back(Fault::OtherAdminRemoves(3));

    let outcome = run(
        &directory,
        constraints(2),
        removal(&[1, 2], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Rejected);
    assert_eq!(outcome.conflicts, 1);
    assert_eq!(outcome.violations[0].rule, Rule::MinMembers);
    assert!(outcome.removed.is_empty());
    assert_eq!(directory.state().members, ids(&[1, 2, 4]));
}

#[tokio::test]
async fn a_member_another_administrator_removed_before_our_refused_patch_is_not_ours() {
    // Our PATCH names 1 and 2; another administrator removes 1 first, so the
    // PATCH is refused whole. The engine used to credit itself with member 1
    // on the next read (found by tests/safety_property.rs, where the minimum
    // then turned the removal into a failure that had "removed" member 1).
    let directory = FakeDirectory::with_members(&[1, 2, 3, 4, 5]);
    directory
        .state()
        .faults
        .push_back(Fault::OtherAdminRemoves(1));
    let journal = Recorder::default();

    let outcome = engine(&directory, constraints(3))
        .run(
            &removal(&[1, 2], Mode::AllOrNothing, false),
            Progress::default(),
            &journal,
        )
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[2]));
    assert_eq!(outcome.not_members, ids(&[1]));
    assert_eq!((outcome.attempts, outcome.conflicts), (2, 1));
    let saved = journal.0.lock().unwrap();
    assert!(
        saved.iter().any(|p| p.conflicts == 1 && p.intent.is_none()),
        "the refused intent is dropped, durably"
    );
}

#[tokio::test]
async fn a_conflict_after_an_unanswered_try_credits_what_the_lost_try_removed() {
    // The first try of the PATCH went through but its answer was lost; the
    // client's retry met the version that try made.
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory
        .state()
        .faults
        .push_back(Fault::ApplyThenRetryConflicts);

    let outcome = engine(&directory, constraints(1))
        .run(
            &removal(&[1], Mode::AllOrNothing, false),
            Progress::default(),
            &Recorder::default(),
        )
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1]));
    assert!(outcome.not_members.is_empty());
    assert_eq!((outcome.attempts, outcome.conflicts), (1, 1));
}

#[tokio::test]
async fn a_conflict_is_retried_with_the_new_version() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().faults.push_back(Fault::Conflict);

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!((outcome.attempts, outcome.conflicts), (2, 1));
    let versions: Vec<String> = directory
        .state()
        .patches
        .iter()
        .map(|p| p.0.clone())
        .collect();
    assert_eq!(versions, vec!["\"1\"", "\"2\""]);
}

#[tokio::test]
async fn conflicts_beyond_the_retry_limit_fail_the_removal() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory
        .state()
        .faults
        .extend(std::iter::repeat_n(Fault::Conflict, 10));

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(
        outcome.error.unwrap().code,
        FailureCode::ConflictRetriesExhausted
    );
    assert_eq!((outcome.attempts, outcome.conflicts), (4, 4));
    assert!(outcome.removed.is_empty());
}

#[tokio::test]
async fn an_answer_without_the_group_is_verified_by_reading_again() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().faults.push_back(Fault::AnswerWithoutBody);

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1]));
    assert_eq!(directory.state().reads, 2);
}

#[tokio::test]
async fn a_success_that_left_the_member_in_place_is_not_applied() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().faults.push_back(Fault::LieAboutSuccess);

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(outcome.error.unwrap().code, FailureCode::NotApplied);
    assert!(outcome.removed.is_empty());
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_reading_the_group() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().faults.push_back(Fault::ApplyThenFail);

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(
        outcome.error.unwrap().code,
        FailureCode::UpstreamUnavailable
    );
    assert_eq!(
        outcome.removed,
        ids(&[1]),
        "the read shows the PATCH went through"
    );
}

#[tokio::test]
async fn a_resumed_removal_reports_members_its_last_patch_removed() {
    // The process died after the PATCH went out but before its answer was
    // saved: the group no longer holds member 1.
    let directory = FakeDirectory::with_members(&[2, 3]);
    let progress = Progress {
        removed: Vec::new(),
        intent: Some(PatchIntent {
            members: ids(&[1]),
            version: "\"1\"".into(),
        }),
        attempts: 1,
        conflicts: 0,
    };

    let outcome = engine(&directory, constraints(1))
        .run(
            &removal(&[1], Mode::AllOrNothing, false),
            progress,
            &Recorder::default(),
        )
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1]));
    assert!(outcome.not_members.is_empty());
    assert!(directory.state().patches.is_empty());
}

#[tokio::test]
async fn a_protected_group_is_rejected_without_asking_genesys() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    let mut constraints = constraints(1);
    constraints.protected_groups = vec![group_id().to_string()];

    let outcome = run(
        &directory,
        constraints,
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Rejected);
    assert_eq!(outcome.violations[0].rule, Rule::ProtectedGroup);
    assert_eq!(directory.state().reads, 0);
}

#[tokio::test]
async fn a_failed_role_look_up_fails_the_removal_rather_than_assuming_no_roles() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().role_lookup_fails = true;
    let mut constraints = constraints(1);
    constraints.protected_roles = vec!["Master Admin".into()];

    let outcome = run(
        &directory,
        constraints,
        removal(&[1], Mode::AllOrNothing, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Failed);
    assert_eq!(outcome.error.unwrap().code, FailureCode::RoleLookupFailed);
    assert!(directory.state().patches.is_empty());
}

#[tokio::test]
async fn a_member_holding_a_protected_role_is_kept() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);
    directory.state().roles = vec![(id(2), vec!["master admin".into()])];
    let mut constraints = constraints(1);
    constraints.protected_roles = vec!["Master Admin".into()];

    let outcome = run(
        &directory,
        constraints,
        removal(&[1, 2], Mode::BestEffort, false),
    )
    .await;

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1]));
    assert_eq!(outcome.blocked[0].rule, Rule::ProtectedRole);
    assert_eq!(directory.state().role_lookups, 2);
}

#[tokio::test]
async fn a_dry_run_plans_and_changes_nothing() {
    let directory = FakeDirectory::with_members(&[1, 2, 3]);

    let outcome = run(
        &directory,
        constraints(1),
        removal(&[1, 9], Mode::AllOrNothing, true),
    )
    .await;

    assert_eq!(outcome.status, Status::Planned);
    assert_eq!(outcome.would_remove, Some(ids(&[1])));
    assert_eq!(outcome.not_members, ids(&[9]));
    assert!(directory.state().patches.is_empty());
}

#[tokio::test]
async fn large_removals_are_split_and_each_part_checked_again() {
    let directory = FakeDirectory::with_members(&[1, 2, 3, 4, 5]);
    let settings = EngineSettings {
        max_conflict_retries: 3,
        max_operations_per_patch: 2,
    };
    let engine = Engine::new(directory.clone(), RuleBook::new(&constraints(1)), settings);

    let outcome = engine
        .run(
            &removal(&[1, 2, 3], Mode::AllOrNothing, false),
            Progress::default(),
            &Recorder::default(),
        )
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!(outcome.removed, ids(&[1, 2, 3]));
    let batches: Vec<usize> = directory
        .state()
        .patches
        .iter()
        .map(|p| p.1.len())
        .collect();
    assert_eq!(batches, vec![2, 1]);
}
