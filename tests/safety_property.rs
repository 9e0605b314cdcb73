//! Safety as a property (contract, sections 3 and 4).
//!
//! Whatever the group, the rules, the request and whatever other
//! administrators do between our read and our PATCH, the service never removes
//! a member it was not asked to remove, never one it knew to be protected, and
//! never leaves a group below `min_members` as of the version it patched; and
//! its report agrees with the group: everything it removed is reported, and
//! the status follows the rules of section 3.
//!
//! Two levels:
//! - the pure planner, on generated groups, rules, roles and requests;
//! - the real engine with the real Genesys client against the sandbox on
//!   127.0.0.1, where a scripted other administrator acts inside each PATCH,
//!   before its `If-Match` is checked (`Org::set_before_patch`). The hook
//!   records the group before and after its own change, so every PATCH's
//!   effect is the difference between what the hook left and what the next
//!   observation finds: each PATCH is checked on its own.
//!
//! `PROPTEST_CASES` sets the number of cases (128 for the engine, 512 for
//! the planner).

mod support;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use scim_removals::config::ConstraintSettings;
use scim_removals::genesys::GenesysClient;
use scim_removals::removal::plan::{self, KnownRoles};
use scim_removals::removal::{
    Engine, EngineSettings, FailureCode, GroupId, GroupMember, GroupSnapshot, Journal, MemberId,
    MemberKind, Mode, Outcome, Progress, Removal, RemovalRequest, Rule, RuleBook, Status,
};
use scim_removals::sandbox::{ConflictStyle, Knobs, Member, Org, PatchAnswer};
use scim_removals::telemetry::Metrics;
use uuid::Uuid;

/// The protected role, as the configuration spells it.
const PROTECTED_ROLE: &str = "Master Admin";

/// How users may spell the protected role: role names compare without case.
const ROLE_SPELLINGS: &[&str] = &[
    "Master Admin",
    "master admin",
    "MASTER ADMIN",
    "mAsTeR aDmIn",
];

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default_cases),
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------
// What is generated
// ---------------------------------------------------------------------------

/// The roles a user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Roles {
    None,
    Employee,
    /// The protected role, in one of [`ROLE_SPELLINGS`].
    Admin(usize),
    /// The protected role among others.
    EmployeeAndAdmin(usize),
    Supervisor,
}

impl Roles {
    fn names(self) -> Vec<&'static str> {
        match self {
            Roles::None => vec![],
            Roles::Employee => vec!["Employee"],
            Roles::Admin(spelling) => vec![ROLE_SPELLINGS[spelling]],
            Roles::EmployeeAndAdmin(spelling) => vec!["Employee", ROLE_SPELLINGS[spelling]],
            Roles::Supervisor => vec!["Supervisor"],
        }
    }

    fn protected(self) -> bool {
        matches!(self, Roles::Admin(_) | Roles::EmployeeAndAdmin(_))
    }
}

/// Someone who is, or could become, a member of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Person {
    User(Roles),
    /// A nested group: counts toward the minimum, is never role-checked.
    Nested,
}

/// One member named by a request.
#[derive(Debug, Clone)]
enum Ask {
    /// A member of the group as first read.
    Member(Index),
    /// A user outside the group (another administrator may add it).
    Outsider(Index),
    /// An id nobody holds.
    Stranger,
    /// A member asked for earlier in the same request, again.
    Again(Index),
}

/// What another administrator does inside one PATCH, before its `If-Match`
/// is checked.
#[derive(Debug, Clone)]
enum OtherAdmin {
    /// Adds someone from the population (an outsider, or a member back).
    Add(Index),
    /// Removes one of the group's current members.
    Remove(Index),
    /// Saves the group unchanged: only the version moves.
    Bump,
    /// Lets this PATCH through untouched.
    Pass,
}

#[derive(Debug, Clone)]
struct Scenario {
    members: Vec<Person>,
    outsiders: Vec<Roles>,
    min_members: usize,
    /// Members or outsiders listed in `protected_members`; the flag writes the
    /// id in upper case, as a configuration may.
    protected: Vec<(Index, bool)>,
    roles_checked: bool,
    asks: Vec<(Ask, bool)>,
    mode: Mode,
    script: Vec<OtherAdmin>,
    max_operations_per_patch: usize,
    conflict_style: ConflictStyle,
    patch_answer: PatchAnswer,
}

fn roles() -> impl Strategy<Value = Roles> {
    prop_oneof![
        2 => Just(Roles::None),
        4 => Just(Roles::Employee),
        2 => (0..ROLE_SPELLINGS.len()).prop_map(Roles::Admin),
        1 => (0..ROLE_SPELLINGS.len()).prop_map(Roles::EmployeeAndAdmin),
        1 => Just(Roles::Supervisor),
    ]
}

fn person() -> impl Strategy<Value = Person> {
    prop_oneof![5 => roles().prop_map(Person::User), 1 => Just(Person::Nested)]
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        6 => any::<Index>().prop_map(Ask::Member),
        2 => any::<Index>().prop_map(Ask::Outsider),
        1 => Just(Ask::Stranger),
        1 => any::<Index>().prop_map(Ask::Again),
    ]
}

fn other_admin() -> impl Strategy<Value = OtherAdmin> {
    prop_oneof![
        3 => any::<Index>().prop_map(OtherAdmin::Add),
        3 => any::<Index>().prop_map(OtherAdmin::Remove),
        2 => Just(OtherAdmin::Bump),
        2 => Just(OtherAdmin::Pass),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let group = (
        prop::collection::vec(person(), 5..=30),
        prop::collection::vec(roles(), 0..6),
        0usize..=12,
        prop::collection::vec((any::<Index>(), any::<bool>()), 0..4),
        prop::bool::weighted(0.7),
    );
    let request = (
        prop::collection::vec((ask(), any::<bool>()), 1..12),
        prop_oneof![Just(Mode::AllOrNothing), Just(Mode::BestEffort)],
        prop::collection::vec(other_admin(), 0..9),
        prop_oneof![3 => Just(100usize), 1 => Just(2usize), 1 => Just(3usize)],
        prop_oneof![
            Just(ConflictStyle::InvalidVers400),
            Just(ConflictStyle::Conflict409),
            Just(ConflictStyle::PreconditionFailed412),
        ],
        prop_oneof![Just(PatchAnswer::GroupBody), Just(PatchAnswer::NoContent)],
    );
    (group, request).prop_map(|(group, request)| {
        let (members, outsiders, min_members, protected, roles_checked) = group;
        let (asks, mode, script, max_operations_per_patch, conflict_style, patch_answer) = request;
        Scenario {
            members,
            outsiders,
            min_members,
            protected,
            roles_checked,
            asks,
            mode,
            script,
            max_operations_per_patch,
            conflict_style,
            patch_answer,
        }
    })
}

// ---------------------------------------------------------------------------
// The scenario made concrete: ids, the org, the rules
// ---------------------------------------------------------------------------

/// Everyone of a scenario with an id (lower case), in the order generated:
/// the group's members first, then the outsiders.
struct Population {
    group_id: String,
    people: Vec<(String, Person)>,
    member_count: usize,
    /// Lower-case ids listed in `protected_members`.
    protected: BTreeSet<String>,
    /// How the configuration lists them (some in upper case).
    protected_as_configured: Vec<String>,
    /// The request's members, as sent (duplicates and letter case kept).
    requested: Vec<String>,
}

impl Population {
    fn new(scenario: &Scenario) -> Population {
        let fresh = || Uuid::new_v4().to_string();
        let people: Vec<(String, Person)> = scenario
            .members
            .iter()
            .copied()
            .chain(scenario.outsiders.iter().map(|roles| Person::User(*roles)))
            .map(|person| (fresh(), person))
            .collect();
        let member_count = scenario.members.len();

        let mut protected = BTreeSet::new();
        let mut protected_as_configured = Vec::new();
        for (index, upper) in &scenario.protected {
            let id = people[index.index(people.len())].0.clone();
            protected_as_configured.push(if *upper {
                id.to_uppercase()
            } else {
                id.clone()
            });
            protected.insert(id);
        }

        let mut requested: Vec<String> = Vec::new();
        for (ask, upper) in &scenario.asks {
            let id = match ask {
                Ask::Member(index) => people[index.index(member_count)].0.clone(),
                Ask::Outsider(index) if people.len() > member_count => {
                    let outsiders = people.len() - member_count;
                    people[member_count + index.index(outsiders)].0.clone()
                }
                Ask::Again(index) if !requested.is_empty() => {
                    requested[index.index(requested.len())].to_lowercase()
                }
                _ => fresh(),
            };
            requested.push(if *upper { id.to_uppercase() } else { id });
        }

        Population {
            group_id: fresh(),
            people,
            member_count,
            protected,
            protected_as_configured,
            requested,
        }
    }

    fn person(&self, id: &str) -> Option<Person> {
        self.people
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, person)| *person)
    }

    /// Whether the rules protect `id`: listed, or holding the protected role
    /// while roles are checked. Nested groups hold no roles.
    fn is_protected(&self, id: &str, roles_checked: bool) -> bool {
        let holds_role = matches!(self.person(id), Some(Person::User(roles)) if roles.protected());
        self.protected.contains(id) || (roles_checked && holds_role)
    }

    fn requested_set(&self) -> BTreeSet<String> {
        self.requested.iter().map(|id| id.to_lowercase()).collect()
    }

    fn sandbox_member(&self, id: &str, person: Person) -> Member {
        match person {
            Person::User(_) => Member::user(id),
            Person::Nested => Member::group(id),
        }
    }

    /// Puts the users and the group into the org.
    fn seed(&self, org: &Org) {
        for (id, person) in &self.people {
            if let Person::User(roles) = person {
                org.add_user(id, "property.user", &roles.names());
            }
        }
        let members: Vec<Member> = self.people[..self.member_count]
            .iter()
            .map(|(id, person)| self.sandbox_member(id, *person))
            .collect();
        org.put_group(&self.group_id, "Property", &members);
    }
}

// ---------------------------------------------------------------------------
// What the other administrator's hook sees and does
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observation {
    version: u64,
    members: BTreeSet<String>,
}

fn observe(org: &Org, group_id: &str) -> Observation {
    Observation {
        version: org.version(group_id).unwrap_or_default(),
        members: org
            .members(group_id)
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// One PATCH, as the hook saw it.
#[derive(Debug, Clone)]
struct PatchSeen {
    /// The group when the PATCH arrived.
    before: Observation,
    /// The group once the other administrator had acted: what the PATCH's
    /// `If-Match` is checked against.
    after_other_admin: Observation,
    /// The intent the engine recorded last before this PATCH: members, version.
    intent: Option<(Vec<String>, String)>,
}

#[derive(Clone, Default)]
struct RecordingJournal(Arc<Mutex<Vec<Progress>>>);

impl RecordingJournal {
    fn last_intent(&self) -> Option<(Vec<String>, String)> {
        let saved = self.0.lock().unwrap();
        let intent = saved.last()?.intent.as_ref()?;
        let members = intent.members.iter().map(|m| m.to_string()).collect();
        Some((members, intent.version.clone()))
    }
}

impl Journal for RecordingJournal {
    async fn save_progress(&self, progress: &Progress) -> Result<(), anyhow::Error> {
        self.0.lock().unwrap().push(progress.clone());
        Ok(())
    }
}

/// What the other administrator's hook saw during one case, PATCH by PATCH.
#[derive(Default)]
struct OtherAdminLog {
    seen: Mutex<Vec<PatchSeen>>,
}

/// Installs the scripted other administrator on `org` for this group.
fn install_other_admin(
    org: &Org,
    population: &Population,
    script: &[OtherAdmin],
    journal: &RecordingJournal,
) -> Arc<OtherAdminLog> {
    let log = Arc::new(OtherAdminLog::default());
    let script = Mutex::new(VecDeque::from(script.to_vec()));
    let group_id = population.group_id.clone();
    let pool: Vec<Member> = population
        .people
        .iter()
        .map(|(id, person)| population.sandbox_member(id, *person))
        .collect();

    let hook = {
        let (log, journal) = (log.clone(), journal.clone());
        move |org: &Org, patched: &str| {
            if patched != group_id {
                return;
            }
            let before = observe(org, &group_id);
            let intent = journal.last_intent();
            match script.lock().unwrap().pop_front() {
                Some(OtherAdmin::Add(index)) => {
                    org.add_member(&group_id, pool[index.index(pool.len())].clone());
                }
                Some(OtherAdmin::Remove(index)) if !before.members.is_empty() => {
                    let members: Vec<&String> = before.members.iter().collect();
                    let victim = members[index.index(members.len())].clone();
                    org.remove_member(&group_id, &victim);
                }
                Some(OtherAdmin::Bump) => org.bump_version(&group_id),
                _ => {}
            }
            let after_other_admin = observe(org, &group_id);
            log.seen.lock().unwrap().push(PatchSeen {
                before,
                after_other_admin,
                intent,
            });
        }
    };
    org.set_before_patch(Some(Arc::new(hook)));
    log
}

// ---------------------------------------------------------------------------
// One case: the real engine against the sandbox
// ---------------------------------------------------------------------------

fn engine_for(
    genesys: &str,
    scenario: &Scenario,
    population: &Population,
) -> Engine<GenesysClient> {
    let mut settings = support::settings(genesys);
    settings.constraints = ConstraintSettings {
        min_members: scenario.min_members,
        max_removals_per_request: 100,
        protected_members: population.protected_as_configured.clone(),
        protected_roles: if scenario.roles_checked {
            vec![PROTECTED_ROLE.into()]
        } else {
            vec![]
        },
        protected_groups: vec![],
        groups: HashMap::new(),
    };
    let endpoints = settings.genesys_endpoints().expect("sandbox endpoints");
    let client = GenesysClient::new(&settings.genesys, &endpoints, Arc::new(Metrics::new()))
        .expect("a Genesys client");
    Engine::new(
        client,
        RuleBook::new(&settings.constraints),
        EngineSettings {
            max_conflict_retries: settings.genesys.retry.max_conflict_retries,
            max_operations_per_patch: scenario.max_operations_per_patch,
        },
    )
}

/// What one case left behind, for the checks.
struct Run {
    initial: Observation,
    seen: Vec<PatchSeen>,
    last: Observation,
    outcome: Outcome,
    /// Status of each PATCH to the group, in order.
    patch_statuses: Vec<u16>,
    patches_without_if_match: usize,
}

async fn run_case(org: &Org, genesys: &str, scenario: &Scenario) -> Result<(), TestCaseError> {
    let population = Population::new(scenario);
    population.seed(org);
    org.set_knobs(Knobs {
        conflict_style: scenario.conflict_style,
        patch_answer: scenario.patch_answer,
        ..Knobs::default()
    });
    org.clear_requests();
    let initial = observe(org, &population.group_id);
    let journal = RecordingJournal::default();
    let other_admin = install_other_admin(org, &population, &scenario.script, &journal);

    let engine = engine_for(genesys, scenario, &population);
    let request = RemovalRequest {
        group_id: GroupId::parse(&population.group_id).expect("a group id"),
        members: population
            .requested
            .iter()
            .map(|id| MemberId::parse(id).expect("a member id"))
            .collect(),
        mode: scenario.mode,
        dry_run: false,
        client: "property".into(),
        requested_by: None,
        reason: None,
    };
    let removal = Removal::new(request, Utc::now());
    let ran = tokio::time::timeout(
        Duration::from_secs(30),
        engine.run(&removal, Progress::default(), &journal),
    )
    .await;
    org.set_before_patch(None);
    let outcome = ran
        .map_err(|_| TestCaseError::fail("the engine did not finish within 30 s"))?
        .map_err(|error| TestCaseError::fail(format!("the engine failed: {error}")))?;

    let patch_path = format!("/api/v2/scim/v2/groups/{}", population.group_id);
    let patches: Vec<_> = org
        .requests()
        .into_iter()
        .filter(|request| request.method == "PATCH" && request.path == patch_path)
        .collect();
    let run = Run {
        initial,
        seen: other_admin.seen.lock().unwrap().clone(),
        last: observe(org, &population.group_id),
        outcome,
        patch_statuses: patches.iter().map(|request| request.status).collect(),
        patches_without_if_match: patches.iter().filter(|r| r.if_match.is_none()).count(),
    };
    let ours = check_every_patch(scenario, &population, &run)?;
    check_outcome(scenario, &population, &run, &ours)
}

/// What our PATCHes removed, each checked on its own.
fn check_every_patch(
    scenario: &Scenario,
    population: &Population,
    run: &Run,
) -> Result<BTreeSet<String>, TestCaseError> {
    // Before the first PATCH, only reads happen: nothing may change.
    let first = run.seen.first().map_or(&run.last, |patch| &patch.before);
    prop_assert_eq!(first, &run.initial, "the group changed before any PATCH");
    prop_assert_eq!(
        run.patches_without_if_match,
        0,
        "a PATCH went out without If-Match"
    );
    // Every PATCH passed the hook, so none escapes the checks below.
    prop_assert_eq!(run.seen.len(), run.patch_statuses.len());

    let requested = population.requested_set();
    let mut ours = BTreeSet::new();
    for (i, patch) in run.seen.iter().enumerate() {
        let from = &patch.after_other_admin;
        let to = run.seen.get(i + 1).map_or(&run.last, |next| &next.before);
        let gone: BTreeSet<String> = from.members.difference(&to.members).cloned().collect();
        let added: Vec<&String> = to.members.difference(&from.members).collect();

        if to.version == from.version {
            prop_assert!(
                gone.is_empty() && added.is_empty(),
                "PATCH {} changed nothing",
                i
            );
            continue;
        }
        prop_assert_eq!(to.version, from.version + 1, "PATCH {} is one change", i);
        prop_assert!(added.is_empty(), "PATCH {} added {:?}", i, added);
        for member in &gone {
            prop_assert!(
                requested.contains(member),
                "PATCH {i} removed unrequested {member}"
            );
            prop_assert!(
                !population.is_protected(member, scenario.roles_checked),
                "PATCH {i} removed the protected member {member}"
            );
        }
        if !gone.is_empty() {
            prop_assert!(
                to.members.len() >= scenario.min_members,
                "PATCH {} left {} members, below the minimum of {}",
                i,
                to.members.len(),
                scenario.min_members
            );
        }

        // It carried the intent recorded before it, at the version it read.
        let (intent_members, intent_version) = patch.intent.clone().unwrap_or_default();
        prop_assert_eq!(intent_version, format!("\"{}\"", from.version));
        for member in &gone {
            prop_assert!(
                intent_members.contains(member),
                "{member} was not in the intent"
            );
        }
        ours.extend(gone);
    }
    Ok(ours)
}

fn check_outcome(
    scenario: &Scenario,
    population: &Population,
    run: &Run,
    ours: &BTreeSet<String>,
) -> Result<(), TestCaseError> {
    let outcome = &run.outcome;
    let requested = population.requested_set();
    let removed: BTreeSet<String> = outcome.removed.iter().map(|m| m.to_string()).collect();
    let blocked: BTreeSet<String> = outcome
        .blocked
        .iter()
        .map(|b| b.member.to_string())
        .collect();

    // `removed`: listed once, and exactly what our PATCHes removed. Every
    // PATCH here is answered, so a refused one is known to have done nothing
    // and a member another administrator removed is never credited to us.
    prop_assert_eq!(
        removed.len(),
        outcome.removed.len(),
        "removed lists a member twice"
    );
    prop_assert_eq!(
        ours,
        &removed,
        "what our PATCHes removed vs what was reported"
    );
    prop_assert!(
        removed.is_subset(&requested),
        "removed {:?} ⊄ requested",
        removed
    );
    for member in &removed {
        let re_added = run.seen.iter().any(|patch| {
            !patch.before.members.contains(member)
                && patch.after_other_admin.members.contains(member)
        });
        prop_assert!(
            !run.last.members.contains(member) || re_added,
            "{member} is reported removed but is still in the group"
        );
    }

    // Counters match what the sandbox saw.
    prop_assert_eq!(outcome.attempts as usize, run.patch_statuses.len());
    let conflicts = run
        .patch_statuses
        .iter()
        .filter(|status| matches!(status, 400 | 409 | 412))
        .count();
    prop_assert_eq!(outcome.conflicts as usize, conflicts);

    for entry in &outcome.blocked {
        let member = entry.member.to_string();
        let holds_role =
            matches!(population.person(&member), Some(Person::User(roles)) if roles.protected());
        match entry.rule {
            Rule::ProtectedMember => prop_assert!(population.protected.contains(&member)),
            Rule::ProtectedRole => prop_assert!(scenario.roles_checked && holds_role),
            Rule::MinMembers => prop_assert_eq!(scenario.mode, Mode::BestEffort),
            Rule::ProtectedGroup => prop_assert!(false, "protected_group is not member-level"),
        }
    }
    check_status(scenario, &requested, &removed, &blocked, outcome)
}

/// The status rules of contract section 3.
fn check_status(
    scenario: &Scenario,
    requested: &BTreeSet<String>,
    removed: &BTreeSet<String>,
    blocked: &BTreeSet<String>,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    let stopped = !outcome.blocked.is_empty() || !outcome.violations.is_empty();
    let split = requested.len() > scenario.max_operations_per_patch;
    prop_assert_eq!(outcome.error.is_some(), outcome.status == Status::Failed);
    prop_assert!(outcome.would_remove.is_none(), "would_remove on a real run");

    match outcome.status {
        Status::Rejected => {
            prop_assert!(removed.is_empty(), "rejected but removed {:?}", removed);
            prop_assert!(stopped, "rejected without a rule named");
        }
        Status::Succeeded => {
            let not_members = outcome.not_members.iter().map(|m| m.to_string());
            let accounted: BTreeSet<String> = removed
                .iter()
                .chain(blocked)
                .cloned()
                .chain(not_members)
                .collect();
            prop_assert_eq!(
                &accounted,
                requested,
                "a requested member is unaccounted for"
            );
            if scenario.mode == Mode::BestEffort {
                prop_assert!(!removed.is_empty() || !outcome.not_members.is_empty());
            }
        }
        Status::Failed => {
            let code = outcome.error.as_ref().map(|error| error.code);
            let expected = [
                FailureCode::ConflictRetriesExhausted,
                FailureCode::NotApplied,
            ];
            prop_assert!(
                code.is_some_and(|code| expected.contains(&code)),
                "{:?}",
                code
            );
            if code == Some(FailureCode::NotApplied) {
                prop_assert!(split, "not_applied without a split removal");
            }
        }
        other => prop_assert!(false, "a finished removal is never {:?}", other),
    }

    if scenario.mode == Mode::AllOrNothing && stopped {
        let failed_after_a_part = outcome.status == Status::Failed && split;
        prop_assert!(
            outcome.status == Status::Rejected || failed_after_a_part,
            "all_or_nothing with a rule stopping it ended {:?}",
            outcome.status
        );
    }
    Ok(())
}

#[test]
fn the_engine_stays_safe_whatever_other_administrators_do_between_read_and_patch() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (org, genesys) = runtime.block_on(support::sandbox());

    let result = runner(128).run(&scenario(), |scenario| {
        runtime.block_on(run_case(&org, &genesys, &scenario))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

// ---------------------------------------------------------------------------
// The pure planner
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PlannerInput {
    members: Vec<Person>,
    /// Whether the roles of each member are already known.
    known: Vec<bool>,
    min_members: usize,
    protected: Vec<Index>,
    roles_checked: bool,
    asks: Vec<Ask>,
    mode: Mode,
}

fn planner_input() -> impl Strategy<Value = PlannerInput> {
    (
        prop::collection::vec(person(), 0..30),
        prop::collection::vec(any::<bool>(), 30),
        0usize..=32,
        prop::collection::vec(any::<Index>(), 0..4),
        any::<bool>(),
        prop::collection::vec(ask(), 0..15),
        prop_oneof![Just(Mode::AllOrNothing), Just(Mode::BestEffort)],
    )
        .prop_map(
            |(members, known, min_members, protected, roles_checked, asks, mode)| PlannerInput {
                members,
                known,
                min_members,
                protected,
                roles_checked,
                asks,
                mode,
            },
        )
}

/// The input made concrete: the group, the rules, the roles known so far, the
/// request, and every member's true roles (what a look-up would answer).
struct Planned {
    ids: Vec<MemberId>,
    group: GroupSnapshot,
    rules: scim_removals::removal::GroupRules,
    known: KnownRoles,
    truth: KnownRoles,
    protected: BTreeSet<MemberId>,
    requested: Vec<MemberId>,
}

fn concrete(input: &PlannerInput) -> Planned {
    let ids: Vec<MemberId> = input
        .members
        .iter()
        .map(|_| MemberId::parse(&Uuid::new_v4().to_string()).unwrap())
        .collect();
    let group = GroupSnapshot {
        version: "\"1\"".into(),
        members: ids
            .iter()
            .zip(&input.members)
            .map(|(id, person)| GroupMember {
                id: id.clone(),
                kind: match person {
                    Person::User(_) => MemberKind::User,
                    Person::Nested => MemberKind::Group,
                },
            })
            .collect(),
    };
    let protected: BTreeSet<MemberId> = if ids.is_empty() {
        BTreeSet::new()
    } else {
        input
            .protected
            .iter()
            .map(|i| ids[i.index(ids.len())].clone())
            .collect()
    };
    let settings = ConstraintSettings {
        min_members: input.min_members,
        max_removals_per_request: 100,
        protected_members: protected.iter().map(|id| id.to_string()).collect(),
        protected_roles: if input.roles_checked {
            vec![PROTECTED_ROLE.into()]
        } else {
            vec![]
        },
        protected_groups: vec![],
        groups: HashMap::new(),
    };
    let group_id = GroupId::parse(&Uuid::new_v4().to_string()).unwrap();
    let rules = RuleBook::new(&settings).for_group(&group_id);

    let mut truth = KnownRoles::new();
    let mut known = KnownRoles::new();
    for (i, (id, person)) in ids.iter().zip(&input.members).enumerate() {
        if let Person::User(roles) = person {
            let names: Vec<String> = roles.names().into_iter().map(String::from).collect();
            if input.known[i] {
                known.insert(id.clone(), names.clone());
            }
            truth.insert(id.clone(), names);
        }
    }

    let mut requested: Vec<MemberId> = Vec::new();
    for ask in &input.asks {
        let id = match ask {
            Ask::Member(index) if !ids.is_empty() => ids[index.index(ids.len())].clone(),
            Ask::Again(index) if !requested.is_empty() => {
                requested[index.index(requested.len())].clone()
            }
            _ => MemberId::parse(&Uuid::new_v4().to_string()).unwrap(),
        };
        requested.push(id);
    }
    Planned {
        ids,
        group,
        rules,
        known,
        truth,
        protected,
        requested,
    }
}

impl Planned {
    fn holds_protected_role(&self, input: &PlannerInput, id: &MemberId) -> bool {
        let position = self.ids.iter().position(|known| known == id);
        let person = position.map(|i| input.members[i]);
        input.roles_checked && matches!(person, Some(Person::User(roles)) if roles.protected())
    }
}

/// The properties every plan has, final or not.
fn check_plan(
    input: &PlannerInput,
    planned: &Planned,
    roles: &KnownRoles,
    plan: &plan::Plan,
) -> Result<(), TestCaseError> {
    let requested: BTreeSet<&MemberId> = planned.requested.iter().collect();
    let members: BTreeSet<&MemberId> = planned.ids.iter().collect();
    let to_remove: BTreeSet<&MemberId> = plan.to_remove.iter().collect();

    prop_assert_eq!(
        to_remove.len(),
        plan.to_remove.len(),
        "to_remove names a member twice"
    );
    for member in &plan.to_remove {
        prop_assert!(requested.contains(member), "{member} was not requested");
        prop_assert!(members.contains(member), "{member} is not a member");
        prop_assert!(
            !planned.protected.contains(member),
            "{member} is a protected member"
        );
        prop_assert!(
            !planned.holds_protected_role(input, member),
            "{member} holds the protected role"
        );
        let user = planned
            .group
            .members
            .iter()
            .any(|m| &m.id == member && m.kind == MemberKind::User);
        if input.roles_checked && user {
            prop_assert!(
                roles.contains_key(member),
                "{member}'s roles were never known"
            );
        }
    }
    if !plan.to_remove.is_empty() {
        let left = planned.group.members.len() - plan.to_remove.len();
        prop_assert!(
            left >= input.min_members,
            "{left} left, minimum {}",
            input.min_members
        );
    }
    for member in &plan.needs_roles {
        prop_assert!(
            !to_remove.contains(member),
            "{member} needs roles and is removed"
        );
    }
    if !plan.needs_roles.is_empty() {
        prop_assert!(
            plan.to_remove.is_empty(),
            "removing before the roles are known"
        );
    }
    let stopped = !plan.blocked.is_empty() || !plan.violations.is_empty();
    if input.mode == Mode::AllOrNothing && stopped {
        prop_assert!(
            plan.to_remove.is_empty(),
            "all_or_nothing removes while stopped"
        );
    }
    for member in &plan.not_members {
        prop_assert!(
            !members.contains(member),
            "{member} is a member, not a non-member"
        );
    }
    Ok(())
}

#[test]
fn every_plan_removes_only_requested_unprotected_members_and_keeps_the_minimum() {
    let result = runner(512).run(&planner_input(), |input| {
        let planned = concrete(&input);
        let mut roles = planned.known.clone();

        // Plan as the engine does: look up what the planner asks, plan again.
        for _ in 0..=planned.requested.len() + 1 {
            let plan = plan::plan(
                &planned.requested,
                &planned.group,
                &planned.rules,
                &roles,
                input.mode,
            );
            check_plan(&input, &planned, &roles, &plan)?;
            if plan.needs_roles.is_empty() {
                check_final_plan(&input, &planned, &plan)?;
                return Ok(());
            }
            for member in &plan.needs_roles {
                let held = planned.truth.get(member).cloned().unwrap_or_default();
                roles.insert(member.clone(), held);
            }
        }
        Err(TestCaseError::fail("the planner kept asking for roles"))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// A final plan accounts for every requested member once, in best-effort.
fn check_final_plan(
    input: &PlannerInput,
    planned: &Planned,
    plan: &plan::Plan,
) -> Result<(), TestCaseError> {
    if input.mode != Mode::BestEffort {
        return Ok(());
    }
    let mut distinct: Vec<&MemberId> = Vec::new();
    for member in &planned.requested {
        if !distinct.contains(&member) {
            distinct.push(member);
        }
    }
    for member in distinct {
        let places = [
            plan.to_remove.contains(member),
            plan.not_members.contains(member),
            plan.blocked.iter().any(|b| &b.member == member),
        ];
        let count = places.iter().filter(|placed| **placed).count();
        prop_assert_eq!(count, 1, "{} is in {} places of {:?}", member, count, plan);
    }
    Ok(())
}
