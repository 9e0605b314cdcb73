//! Fault soak: the whole service against a sandbox that misbehaves in every
//! way it can at once.
//!
//! 60 removals over 8 groups meet random 429s (`Retry-After: 1`), 5xx,
//! timeouts (latency spikes above `genesys.request_timeout_ms`), connections
//! dropped after a change was applied, version bumps, and other administrators
//! adding and removing members inside PATCHes. The other administrators only
//! touch "churn" users that no removal asks for, and never take a group below
//! its minimum, so the test can tell their changes from ours:
//!
//! - every removal reaches a final state within the deadline;
//! - every member gone from a group was asked for, and is reported `removed`
//!   by exactly one removal (unless a removal that asked for it failed without
//!   learning what its last, unanswered PATCH did); every member reported
//!   removed is gone;
//! - churn members, nested groups and protected members are exactly where the
//!   other administrators left them;
//! - no group was ever seen below `min_members` (it is looked at inside every
//!   PATCH, and at the end).
//!
//! `SOAK_SEED` replays the test's own choices (the sandbox's faults are drawn
//! afresh each run).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use scim_removals::sandbox::{Knobs, Member, Org};
use serde_json::{Value, json};
use support::TestApp;
use uuid::Uuid;

const GROUPS: usize = 8;
const REMOVALS: usize = 60;
const TARGETS_PER_GROUP: usize = 8;
const CHURN_PER_GROUP: usize = 4;
const MIN_MEMBERS: usize = 4;
const PROTECTED_ROLE: &str = "Master Admin";
/// Every removal must be final by then; the test stays well under 3 minutes.
const DEADLINE: Duration = Duration::from_secs(150);
/// Upstream calls time out after this; latency spikes go above it.
const REQUEST_TIMEOUT_MS: u64 = 250;

/// The faults in force between latency spikes.
fn faulty() -> Knobs {
    Knobs {
        error_429_rate: 0.04,
        retry_after_s: 1,
        error_5xx_rate: 0.1,
        drop_connection_rate: 0.06,
        version_bump_rate: 0.15,
        ..Knobs::default()
    }
}

/// One group of the soak and who is in it.
struct SoakGroup {
    id: String,
    /// Users removals may ask for; the first is a protected member, the
    /// second holds the protected role.
    targets: Vec<String>,
    /// Users only the other administrators add and remove; the first
    /// `CHURN_PER_GROUP - 1` start in the group.
    churn: Vec<String>,
    nested: String,
}

impl SoakGroup {
    fn protected_member(&self) -> &str {
        &self.targets[0]
    }

    fn role_holder(&self) -> &str {
        &self.targets[1]
    }
}

fn seed_org(org: &Org) -> Vec<SoakGroup> {
    let fresh = || Uuid::new_v4().to_string();
    (0..GROUPS)
        .map(|g| {
            let group = SoakGroup {
                id: fresh(),
                targets: (0..TARGETS_PER_GROUP).map(|_| fresh()).collect(),
                churn: (0..CHURN_PER_GROUP).map(|_| fresh()).collect(),
                nested: fresh(),
            };
            for (i, user) in group.targets.iter().enumerate() {
                let roles: &[&str] = if i == 1 {
                    &["Employee", "MASTER ADMIN"]
                } else {
                    &["Employee"]
                };
                org.add_user(user, "soak.target", roles);
            }
            for user in &group.churn {
                org.add_user(user, "soak.churn", &["Employee"]);
            }
            let members: Vec<Member> = group
                .targets
                .iter()
                .chain(&group.churn[..CHURN_PER_GROUP - 1])
                .map(|user| Member::user(user))
                .chain([Member::group(&group.nested)])
                .collect();
            org.put_group(&group.id, &format!("Soak {g}"), &members);
            group
        })
        .collect()
}

/// A change another administrator made, in the order made.
#[derive(Debug, Clone)]
enum Change {
    Add(String),
    Remove(String),
}

/// What the other administrators saw and did, per group.
#[derive(Default)]
struct OtherAdmins {
    changes: BTreeMap<String, Vec<Change>>,
    /// Member counts seen inside PATCHes, before any change of theirs.
    counts_seen: BTreeMap<String, Vec<usize>>,
}

/// Inside every PATCH: look at the group, then sometimes add or remove a
/// churn user, never taking the group to below its minimum.
fn install_other_admins(org: &Org, groups: &[SoakGroup]) -> Arc<Mutex<OtherAdmins>> {
    let admins = Arc::new(Mutex::new(OtherAdmins::default()));
    let churn: BTreeMap<String, Vec<String>> = groups
        .iter()
        .map(|group| (group.id.clone(), group.churn.clone()))
        .collect();

    let hook = {
        let admins = admins.clone();
        move |org: &Org, group_id: &str| {
            // One lock for the look and the change, so the log is in the order
            // the changes were made.
            let mut admins = admins.lock().unwrap();
            let Some(churn) = churn.get(group_id) else {
                return;
            };
            let members: BTreeSet<String> = org
                .members(group_id)
                .unwrap_or_default()
                .into_iter()
                .collect();
            admins
                .counts_seen
                .entry(group_id.to_owned())
                .or_default()
                .push(members.len());
            if !rand::random_bool(0.3) {
                return;
            }

            let (present, absent): (Vec<&String>, Vec<&String>) =
                churn.iter().partition(|user| members.contains(*user));
            let mut rng = rand::rng();
            let (remove, add) = (present.choose(&mut rng), absent.choose(&mut rng));
            let change = match (rand::random_bool(0.5), remove, add) {
                (true, Some(user), _) if members.len() > MIN_MEMBERS => {
                    org.remove_member(group_id, user);
                    Change::Remove((*user).clone())
                }
                (_, _, Some(user)) => {
                    org.add_member(group_id, Member::user(user));
                    Change::Add((*user).clone())
                }
                _ => return,
            };
            admins
                .changes
                .entry(group_id.to_owned())
                .or_default()
                .push(change);
        }
    };
    org.set_before_patch(Some(Arc::new(hook)));
    admins
}

/// When answers were slower than the service's request timeout.
type SpikeWindows = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// Every so often, answers take longer than the service's request timeout,
/// until a request has met the spike: it then ends at once (within 10 ms), so
/// that a spike slows down a request or a few, never a whole retry sequence.
/// Returns the task and the windows.
fn spike_latency(org: Org) -> (tokio::task::JoinHandle<()>, SpikeWindows) {
    let windows = SpikeWindows::default();
    let task = {
        let windows = windows.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let started = Instant::now();
                let arrived = org.requests().len();
                org.set_knobs(Knobs {
                    latency_ms: REQUEST_TIMEOUT_MS + 150,
                    ..faulty()
                });
                for _ in 0..200 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if org.requests().len() > arrived {
                        break;
                    }
                }
                let ended = Instant::now();
                org.set_knobs(faulty());
                windows.lock().unwrap().push((started, ended));
            }
        })
    };
    (task, windows)
}

/// A submitted removal: its id, its group and the members it asked for.
struct Submitted {
    id: String,
    group: usize,
    requested: BTreeSet<String>,
}

async fn submit_removals(app: &TestApp, groups: &[SoakGroup], rng: &mut StdRng) -> Vec<Submitted> {
    let mut submitted = Vec::new();
    for _ in 0..REMOVALS {
        let group = rng.random_range(0..GROUPS);
        let count = rng.random_range(1..=3);
        let mut members: Vec<String> = groups[group]
            .targets
            .choose_multiple(rng, count)
            .cloned()
            .collect();
        if rng.random_bool(0.1) {
            members.push(Uuid::new_v4().to_string());
        }
        let mode = if rng.random_bool(0.5) {
            "all_or_nothing"
        } else {
            "best_effort"
        };

        let body = json!({"members": members, "mode": mode, "reason": "fault soak"});
        let response = app.remove(&groups[group].id, body, &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "the removal is accepted"
        );
        let removal: Value = response.json().await.expect("a removal");
        submitted.push(Submitted {
            id: removal["id"].as_str().expect("an id").to_owned(),
            group,
            requested: members.into_iter().collect(),
        });
    }
    submitted
}

/// Polls until every removal is final; panics past the deadline.
async fn wait_all_final(app: &TestApp, submitted: &[Submitted], started: Instant) -> Vec<Value> {
    let mut finished: BTreeMap<String, Value> = BTreeMap::new();
    while finished.len() < submitted.len() {
        assert!(
            started.elapsed() < DEADLINE,
            "{} of {} removals are not final after {:?}",
            submitted.len() - finished.len(),
            submitted.len(),
            DEADLINE
        );
        for removal in submitted {
            if finished.contains_key(&removal.id) {
                continue;
            }
            let path = format!("/removals/{}", removal.id);
            let answer: Value = app.get(&path).await.json().await.expect("a removal");
            if !matches!(answer["status"].as_str(), Some("queued" | "running")) {
                finished.insert(removal.id.clone(), answer);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    submitted.iter().map(|s| finished[&s.id].clone()).collect()
}

fn id_set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Each removal on its own: the status rules, and nothing unrequested.
fn check_removal(submitted: &Submitted, removal: &Value) {
    let id = &submitted.id;
    let status = removal["status"].as_str().unwrap_or_default();
    let removed = id_set(&removal["removed"]);
    let stopped = removal["blocked"].as_array().is_some_and(|b| !b.is_empty())
        || removal["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty());

    assert!(
        removed.is_subset(&submitted.requested),
        "{id} removed {removed:?}, unrequested"
    );
    assert_eq!(
        removal["error"].is_null(),
        status != "failed",
        "{id}: {removal}"
    );
    match status {
        "succeeded" => {}
        "rejected" => assert!(removed.is_empty() && stopped, "{id}: {removal}"),
        "failed" => {
            let code = removal["error"]["code"].as_str().unwrap_or_default();
            let transient = [
                "upstream_unavailable",
                "conflict_retries_exhausted",
                "role_lookup_failed",
            ];
            assert!(
                transient.contains(&code),
                "{id} failed with {code}: {removal}"
            );
        }
        other => panic!("{id} ended {other}"),
    }
    if removal["mode"] == "all_or_nothing" && stopped {
        assert_eq!(status, "rejected", "{id}: {removal}");
    }
}

/// Each group as a whole: what left it, who says they removed it, and what
/// the other administrators did.
fn check_group(
    org: &Org,
    group: &SoakGroup,
    removals: &[(&Submitted, &Value)],
    admins: &OtherAdmins,
) {
    let members: BTreeSet<String> = org.members(&group.id).unwrap().into_iter().collect();
    let gone: BTreeSet<String> = group
        .targets
        .iter()
        .filter(|t| !members.contains(*t))
        .cloned()
        .collect();
    let asked: BTreeSet<String> = removals
        .iter()
        .flat_map(|(s, _)| s.requested.clone())
        .collect();
    let mut reported = BTreeSet::new();
    for (_, removal) in removals {
        for member in id_set(&removal["removed"]) {
            assert!(
                reported.insert(member.clone()),
                "{member} reported removed twice"
            );
        }
    }

    assert!(
        gone.is_subset(&asked),
        "group {}: {gone:?} left unasked",
        group.id
    );
    assert!(
        reported.is_subset(&gone),
        "group {}: reported removed {reported:?}, gone {gone:?}",
        group.id
    );
    // A member gone but reported by nobody is only possible after a removal
    // that failed without reaching Genesys again to learn what its last,
    // unanswered PATCH did.
    let unknown: BTreeSet<String> = removals
        .iter()
        .filter(|(_, removal)| removal["error"]["code"] == "upstream_unavailable")
        .flat_map(|(submitted, _)| submitted.requested.clone())
        .collect();
    let unreported: BTreeSet<String> = gone.difference(&reported).cloned().collect();
    assert!(
        unreported.is_subset(&unknown),
        "group {}: {unreported:?} are gone but reported removed by nobody",
        group.id
    );
    assert!(
        members.contains(group.protected_member()),
        "a protected member was removed"
    );
    assert!(
        members.contains(group.role_holder()),
        "a protected role holder was removed"
    );
    assert!(
        members.contains(&group.nested),
        "the nested group was removed"
    );

    // Churn members are where the other administrators left them.
    let mut churn: BTreeSet<String> = group.churn[..CHURN_PER_GROUP - 1].iter().cloned().collect();
    for change in admins.changes.get(&group.id).into_iter().flatten() {
        match change {
            Change::Add(user) => churn.insert(user.clone()),
            Change::Remove(user) => churn.remove(user),
        };
    }
    let churn_now: BTreeSet<String> = group
        .churn
        .iter()
        .filter(|u| members.contains(*u))
        .cloned()
        .collect();
    assert_eq!(
        churn_now, churn,
        "group {}: a churn member was touched by us",
        group.id
    );

    let seen = admins.counts_seen.get(&group.id).into_iter().flatten();
    for count in seen.chain([&members.len()]) {
        assert!(
            *count >= MIN_MEMBERS,
            "group {} was seen with {count} members",
            group.id
        );
    }
}

/// The soak is only a soak if the sandbox did misbehave in every way.
fn check_every_fault_was_met(org: &Org, spikes: &[(Instant, Instant)]) {
    let requests = org.requests();
    let mut answered: BTreeMap<u16, usize> = BTreeMap::new();
    for request in &requests {
        *answered.entry(request.status).or_default() += 1;
    }
    let slowed = requests
        .iter()
        .filter(|request| {
            spikes
                .iter()
                .any(|(from, to)| (*from..*to).contains(&request.at))
        })
        .count();
    eprintln!("upstream answers by status (0: none): {answered:?}; slowed: {slowed}");

    assert!(slowed > 0, "no request met a latency spike");
    assert!(answered.contains_key(&429), "no 429 was answered");
    assert!(
        answered.keys().any(|status| *status >= 500),
        "no 5xx was answered"
    );
    assert!(
        answered.contains_key(&0),
        "no connection was dropped or timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_removal_finishes_and_every_invariant_holds_under_faults_and_other_admins() {
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault soak seed: SOAK_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let org = Org::empty();
    let (address, _server) = org
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("the sandbox");
    let groups = seed_org(&org);
    let mut settings = support::settings(&format!("http://{address}"));
    settings.genesys.request_timeout_ms = REQUEST_TIMEOUT_MS;
    settings.constraints.min_members = MIN_MEMBERS;
    settings.constraints.protected_members = groups
        .iter()
        .map(|g| g.protected_member().to_uppercase())
        .collect();
    settings.constraints.protected_roles = vec![PROTECTED_ROLE.into()];
    let app = TestApp::start(settings).await;

    org.set_knobs(faulty());
    let admins = install_other_admins(&org, &groups);
    let (spikes, spike_windows) = spike_latency(org.clone());
    let started = Instant::now();

    let submitted = submit_removals(&app, &groups, &mut rng).await;
    let finished = wait_all_final(&app, &submitted, started).await;
    spikes.abort();
    org.set_knobs(Knobs::default());
    org.set_before_patch(None);
    eprintln!(
        "all {} removals final after {:?}",
        finished.len(),
        started.elapsed()
    );

    for (submitted, removal) in submitted.iter().zip(&finished) {
        check_removal(submitted, removal);
    }
    {
        let admins = admins.lock().unwrap();
        for (index, group) in groups.iter().enumerate() {
            let removals: Vec<(&Submitted, &Value)> = submitted
                .iter()
                .zip(&finished)
                .filter(|(s, _)| s.group == index)
                .collect();
            check_group(&org, group, &removals, &admins);
        }
    }
    let metrics = app.metrics().await;
    let conflicts = support::metric(&metrics, "scim_removals_version_conflicts_total");
    assert!(conflicts > 0.0, "no version conflict was met");
    check_every_fault_was_met(&org, &spike_windows.lock().unwrap());

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for removal in &finished {
        let code = removal["error"]["code"].as_str();
        let outcome = code.or(removal["status"].as_str()).unwrap_or_default();
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
    app.stop().await;
}
