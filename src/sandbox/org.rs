//! The simulated org's state: groups, users, issued tokens, the request log,
//! the rate-limit window and the knobs, with the operations tests and the
//! HTTP handlers perform on it.
//!
//! Everything sits behind one std `Mutex`. Each critical section is a few map
//! operations and none spans an `.await`, so an async lock would only add
//! cost. The lock is released before the `before_patch` hook runs, because the
//! hook calls back into the org.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::knobs::Knobs;
use super::patch::{MemberChange, PatchRejection};
use super::seed;

/// The window the org's own rate limit counts requests in.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// How many requests the log keeps. Tests see far fewer; a long benchmark
/// against `--genesys-only` would otherwise grow the log without end.
const REQUEST_LOG_LIMIT: usize = 100_000;

/// Runs inside each PATCH, after the request is read and before its
/// `If-Match` is checked, with the org and the (lower-case) group id: the
/// place for a test to act as another administrator.
pub type BeforePatch = Arc<dyn Fn(&Org, &str) + Send + Sync>;

/// Whether a member is a user or a nested group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// A user: the member the service removes and role-checks.
    User,
    /// A nested group: counts as a member, holds no roles of its own here.
    Group,
}

impl MemberKind {
    /// The SCIM `type` of a member of this kind.
    pub(crate) fn scim_type(self) -> &'static str {
        match self {
            MemberKind::User => "User",
            MemberKind::Group => "Group",
        }
    }
}

/// A member of a group: a user id or a nested group's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The user's or the nested group's id; the org keeps it in lower case.
    pub value: String,
    /// Sent as the member's SCIM `type`.
    pub kind: MemberKind,
}

impl Member {
    /// A user member; the id is stored in lower case.
    pub fn user(id: &str) -> Self {
        Self {
            value: id.to_ascii_lowercase(),
            kind: MemberKind::User,
        }
    }

    /// A nested group member; the id is stored in lower case.
    pub fn group(id: &str) -> Self {
        Self {
            value: id.to_ascii_lowercase(),
            kind: MemberKind::Group,
        }
    }
}

/// One request the org received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PATCH`...
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with; 0 while it is still in flight, and
    /// for good when its connection was dropped instead of answering.
    pub status: u16,
    /// The `If-Match` header, as sent.
    pub if_match: Option<String>,
}

/// A group as the org holds it; ids are lower case.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) members: Vec<Member>,
    /// Bumped by every change, sent as `ETag: "N"` and `meta.version`.
    pub(crate) version: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
}

/// A user as the org holds it; only what the service may ask about.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) user_name: String,
    pub(crate) display_name: String,
    pub(crate) roles: Vec<String>,
}

/// The answer of the rate-limit window to one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) admitted: bool,
    /// The limit, for `inin-ratelimit-allowed`.
    pub(crate) allowed: u32,
    /// Requests counted in the window, this one included when admitted.
    pub(crate) count: u32,
    /// Seconds until the oldest counted request leaves the window.
    pub(crate) reset_s: u64,
}

/// What became of a PATCH once its `If-Match` was checked.
#[derive(Debug)]
pub(crate) enum PatchOutcome {
    /// Applied; the group as it now is.
    Applied(Group),
    /// The group is gone (another administrator may have deleted it).
    NotFound,
    /// `If-Match` did not name the current version; nothing applied.
    StaleVersion { current: u64 },
    /// An operation could not be applied; nothing applied.
    Rejected(PatchRejection),
}

/// A simulated Genesys Cloud org: groups, users and an OAuth client, served
/// over HTTP by [`Org::router`] or [`Org::spawn`].
///
/// Cloning is cheap and every clone shares the same state, so a test keeps one
/// to change the org and inspect it while the server runs.
#[derive(Clone)]
pub struct Org {
    state: Arc<Mutex<OrgState>>,
}

struct OrgState {
    client_id: String,
    client_secret: String,
    knobs: Knobs,
    /// Keyed by lower-case id; a BTreeMap so that listings come out in a
    /// stable order.
    groups: BTreeMap<String, Group>,
    users: BTreeMap<String, User>,
    /// Issued access tokens and when each stops being accepted.
    tokens: HashMap<String, Instant>,
    before_patch: Option<BeforePatch>,
    /// Each request with a sequence number, so that its status can be filled
    /// in when it is answered even if the log was cleared meanwhile.
    requests: VecDeque<(u64, RecordedRequest)>,
    next_request: u64,
    /// Arrival times of the requests admitted in the last minute.
    admitted: VecDeque<Instant>,
}

impl fmt::Debug for Org {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and tokens stay out of debug output, as they would in a
        // real client; counts are what a reader of a failing test needs.
        let state = self.lock();
        formatter
            .debug_struct("Org")
            .field("client_id", &state.client_id)
            .field("groups", &state.groups.len())
            .field("users", &state.users.len())
            .field("knobs", &state.knobs)
            .finish_non_exhaustive()
    }
}

impl Org {
    /// An org holding the demo users and groups described in the module docs.
    pub fn demo() -> Org {
        let org = Org::empty();
        seed::seed_demo(&org);
        org
    }

    /// An org with no groups and no users, accepting the demo client
    /// credentials.
    pub fn empty() -> Org {
        let state = OrgState {
            client_id: seed::DEMO_CLIENT_ID.to_owned(),
            client_secret: seed::DEMO_CLIENT_SECRET.to_owned(),
            knobs: Knobs::default(),
            groups: BTreeMap::new(),
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            before_patch: None,
            requests: VecDeque::new(),
            next_request: 0,
            admitted: VecDeque::new(),
        };
        Org {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The OAuth client id the org accepts.
    pub fn client_id(&self) -> String {
        self.lock().client_id.clone()
    }

    /// The OAuth client secret the org accepts.
    pub fn client_secret(&self) -> String {
        self.lock().client_secret.clone()
    }

    /// The knobs in force for the next request.
    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }

    /// Replaces the knobs; requests already in flight keep the old ones.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.lock().knobs = knobs;
    }

    /// Adds a user, or replaces the one with the same id.
    pub fn add_user(&self, id: &str, user_name: &str, roles: &[&str]) {
        let id = id.to_ascii_lowercase();
        let user = User {
            id: id.clone(),
            user_name: user_name.to_owned(),
            display_name: display_name_of(user_name),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        };
        self.lock().users.insert(id, user);
    }

    /// Creates a group at version 1, or replaces its name and members and
    /// bumps its version.
    pub fn put_group(&self, id: &str, display_name: &str, members: &[Member]) {
        let id = id.to_ascii_lowercase();
        let members = members.iter().map(lower_cased).collect();
        let now = Utc::now();

        let mut state = self.lock();
        match state.groups.get_mut(&id) {
            Some(group) => {
                group.display_name = display_name.to_owned();
                group.members = members;
                group.version += 1;
                group.last_modified = now;
            }
            None => {
                let group = Group {
                    id: id.clone(),
                    display_name: display_name.to_owned(),
                    members,
                    version: 1,
                    created: now,
                    last_modified: now,
                };
                state.groups.insert(id, group);
            }
        }
    }

    /// The group's member values (user and group ids, lower case), in order;
    /// `None` when there is no such group.
    pub fn members(&self, group_id: &str) -> Option<Vec<String>> {
        let state = self.lock();
        let group = state.groups.get(&group_id.to_ascii_lowercase())?;
        Some(
            group
                .members
                .iter()
                .map(|member| member.value.clone())
                .collect(),
        )
    }

    /// The group's current version; `None` when there is no such group.
    pub fn version(&self, group_id: &str) -> Option<u64> {
        let state = self.lock();
        state
            .groups
            .get(&group_id.to_ascii_lowercase())
            .map(|group| group.version)
    }

    /// Acts as another administrator saving the group unchanged: its version
    /// moves on, so a PATCH carrying the old one meets a conflict. Does
    /// nothing for an unknown group.
    pub fn bump_version(&self, group_id: &str) {
        self.change_group(group_id, |_| {});
    }

    /// Acts as another administrator adding a member (a no-op when it is
    /// already there, apart from the version bump).
    pub fn add_member(&self, group_id: &str, member: Member) {
        let member = lower_cased(&member);
        self.change_group(group_id, |members| {
            if !members.iter().any(|present| present.value == member.value) {
                members.push(member);
            }
        });
    }

    /// Acts as another administrator removing a member.
    pub fn remove_member(&self, group_id: &str, member_id: &str) {
        let member_id = member_id.to_ascii_lowercase();
        self.change_group(group_id, |members| {
            members.retain(|member| member.value != member_id);
        });
    }

    /// Installs (or, with `None`, removes) the hook each PATCH runs before its
    /// `If-Match` is checked.
    pub fn set_before_patch(&self, hook: Option<BeforePatch>) {
        self.lock().before_patch = hook;
    }

    /// Every request received (the latest 100 000), in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let state = self.lock();
        state
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// Empties the request log, so a test can look at only what follows.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Changes a group's members as another administrator would: the change
    /// and a version bump, or nothing when the group does not exist.
    fn change_group(&self, group_id: &str, change: impl FnOnce(&mut Vec<Member>)) {
        let group_id = group_id.to_ascii_lowercase();
        let mut state = self.lock();
        let Some(group) = state.groups.get_mut(&group_id) else {
            tracing::warn!(group_id, "the sandbox has no such group to change");
            return;
        };

        change(&mut group.members);
        group.version += 1;
        group.last_modified = Utc::now();
    }

    fn lock(&self) -> MutexGuard<'_, OrgState> {
        // A panic while the lock was held (a failing assertion in a test
        // thread, say) leaves the state as consistent as any single map
        // operation leaves it; keep serving rather than fail every request.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the HTTP handlers need; not part of the public API.
impl Org {
    pub(crate) fn credentials_match(&self, client_id: &str, client_secret: &str) -> bool {
        let state = self.lock();
        state.client_id == client_id && state.client_secret == client_secret
    }

    /// Issues a random access token valid for `ttl_s` seconds; returns it.
    pub(crate) fn issue_token(&self, ttl_s: u64) -> String {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let expires_at = now + Duration::from_secs(ttl_s);

        let mut state = self.lock();
        // Forget expired tokens here, so a long benchmark does not grow the map.
        state.tokens.retain(|_, expiry| *expiry > now);
        state.tokens.insert(token.clone(), expires_at);
        token
    }

    pub(crate) fn token_is_valid(&self, token: &str) -> bool {
        let state = self.lock();
        state
            .tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Logs a request on arrival; returns its sequence number for
    /// [`Org::log_answer`].
    pub(crate) fn log_arrival(&self, method: &str, path: &str, if_match: Option<String>) -> u64 {
        let request = RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            at: Instant::now(),
            status: 0,
            if_match,
        };

        let mut state = self.lock();
        let sequence = state.next_request;
        state.next_request += 1;
        if state.requests.len() == REQUEST_LOG_LIMIT {
            state.requests.pop_front();
        }
        state.requests.push_back((sequence, request));
        sequence
    }

    /// Fills in the status a logged request was answered with.
    pub(crate) fn log_answer(&self, sequence: u64, status: u16) {
        let mut state = self.lock();
        // The request is most likely among the latest, so search backwards.
        let logged = state
            .requests
            .iter_mut()
            .rev()
            .find(|(number, _)| *number == sequence);
        if let Some((_, request)) = logged {
            request.status = status;
        }
    }

    /// Counts a request against the org's budget of `limit` per sliding
    /// minute. A refused request is not counted.
    pub(crate) fn spend_budget(&self, limit: u32) -> Budget {
        let now = Instant::now();
        let mut state = self.lock();

        while state
            .admitted
            .front()
            .is_some_and(|arrival| now.duration_since(*arrival) >= RATE_LIMIT_WINDOW)
        {
            state.admitted.pop_front();
        }

        let admitted = state.admitted.len() < limit as usize;
        if admitted {
            state.admitted.push_back(now);
        }

        let reset_s = match state.admitted.front() {
            Some(oldest) => {
                let left = RATE_LIMIT_WINDOW.saturating_sub(now.duration_since(*oldest));
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            }
            None => RATE_LIMIT_WINDOW.as_secs(),
        };
        let count = u32::try_from(state.admitted.len()).unwrap_or(u32::MAX);
        Budget {
            admitted,
            allowed: limit,
            count,
            reset_s,
        }
    }

    pub(crate) fn group(&self, group_id: &str) -> Option<Group> {
        let group_id = group_id.to_ascii_lowercase();
        self.lock().groups.get(&group_id).cloned()
    }

    pub(crate) fn groups(&self) -> Vec<Group> {
        self.lock().groups.values().cloned().collect()
    }

    pub(crate) fn user(&self, user_id: &str) -> Option<User> {
        let user_id = user_id.to_ascii_lowercase();
        self.lock().users.get(&user_id).cloned()
    }

    pub(crate) fn before_patch_hook(&self) -> Option<BeforePatch> {
        self.lock().before_patch.clone()
    }

    /// Checks `if_match` against the group's version and applies every
    /// change, or none; a success bumps the version. `group_id` is in lower
    /// case, as the handler has already made it.
    pub(crate) fn apply_patch(
        &self,
        group_id: &str,
        if_match: &str,
        changes: &[MemberChange],
    ) -> PatchOutcome {
        let mut state = self.lock();

        // The check and the write happen under one lock, so no other request
        // can slip in between them.
        let Some(group) = state.groups.get(group_id) else {
            return PatchOutcome::NotFound;
        };
        if !entity_tag_names(if_match, group.version) {
            return PatchOutcome::StaleVersion {
                current: group.version,
            };
        }

        // Changes go to a copy first: a failing operation leaves the group as
        // it was, whatever the operations before it did.
        let mut members = group.members.clone();
        for change in changes {
            if let Err(rejection) = apply_change(&mut members, change, group_id, &state.groups) {
                return PatchOutcome::Rejected(rejection);
            }
        }

        let Some(group) = state.groups.get_mut(group_id) else {
            return PatchOutcome::NotFound;
        };
        group.members = members;
        group.version += 1;
        group.last_modified = Utc::now();
        PatchOutcome::Applied(group.clone())
    }
}

/// Applies one change to a working copy of a group's members.
fn apply_change(
    members: &mut Vec<Member>,
    change: &MemberChange,
    group_id: &str,
    groups: &BTreeMap<String, Group>,
) -> Result<(), PatchRejection> {
    match change {
        MemberChange::Remove { value } => {
            let Some(position) = members.iter().position(|member| member.value == *value) else {
                return Err(PatchRejection::new(
                    "noTarget",
                    format!("{value} is not a member of group {group_id}"),
                ));
            };
            members.remove(position);
        }
        MemberChange::Add { value, kind } => {
            if value == group_id {
                return Err(PatchRejection::new(
                    "invalidValue",
                    "a group cannot be a member of itself",
                ));
            }
            if members.iter().any(|member| member.value == *value) {
                return Ok(());
            }

            // Without a type, an id naming one of the org's groups is a group.
            let kind = kind.unwrap_or(if groups.contains_key(value) {
                MemberKind::Group
            } else {
                MemberKind::User
            });
            members.push(Member {
                value: value.clone(),
                kind,
            });
        }
    }
    Ok(())
}

/// Whether an `If-Match` or `If-None-Match` value names the version: `"N"`,
/// `W/"N"`, or a list holding one of them. `*` is not honoured: Genesys wants
/// the version, and a client sending `*` would skip the conflict check.
pub(crate) fn entity_tag_names(if_match: &str, version: u64) -> bool {
    let current = format!("\"{version}\"");
    if_match.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == current
    })
}

fn lower_cased(member: &Member) -> Member {
    Member {
        value: member.value.to_ascii_lowercase(),
        kind: member.kind,
    }
}

/// "ada.lovelace" becomes "Ada Lovelace": a plausible display name for demo
/// users, who are only given a user name.
fn display_name_of(user_name: &str) -> String {
    let local_part = user_name.split('@').next().unwrap_or(user_name);
    local_part
        .split(['.', '_', '-'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut letters = word.chars();
            match letters.next() {
                Some(first) => first.to_uppercase().chain(letters).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_the_quoted_version_in_its_usual_spellings() {
        assert!(entity_tag_names("\"7\"", 7));
        assert!(entity_tag_names("W/\"7\"", 7));
        assert!(entity_tag_names("\"6\", \"7\"", 7));
        assert!(!entity_tag_names("7", 7));
        assert!(!entity_tag_names("\"6\"", 7));
        assert!(!entity_tag_names("*", 7));
    }

    #[test]
    fn changes_by_other_administrators_bump_the_version() {
        let org = Org::empty();
        org.put_group("G", "Group", &[Member::user("A")]);

        org.add_member("g", Member::user("B"));
        org.remove_member("G", "a");
        org.bump_version("g");

        assert_eq!(org.members("g"), Some(vec!["b".to_owned()]));
        assert_eq!(org.version("G"), Some(4));
    }

    #[test]
    fn a_patch_that_fails_midway_changes_nothing() {
        let org = Org::empty();
        org.put_group("g", "Group", &[Member::user("a"), Member::user("b")]);
        let changes = [
            MemberChange::Remove { value: "a".into() },
            MemberChange::Remove {
                value: "stranger".into(),
            },
        ];

        let outcome = org.apply_patch("g", "\"1\"", &changes);

        assert!(matches!(outcome, PatchOutcome::Rejected(ref r) if r.scim_type == "noTarget"));
        assert_eq!(org.members("g"), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(org.version("g"), Some(1));
    }

    #[test]
    fn the_budget_refuses_requests_beyond_its_limit_without_counting_them() {
        let org = Org::empty();

        let answers: Vec<bool> = (0..4).map(|_| org.spend_budget(2).admitted).collect();

        assert_eq!(answers, [true, true, false, false]);
        assert_eq!(org.spend_budget(2).count, 2);
    }

    #[test]
    fn display_names_are_made_from_user_names() {
        assert_eq!(display_name_of("ada.lovelace"), "Ada Lovelace");
        assert_eq!(display_name_of("break.glass@example.com"), "Break Glass");
    }
}
