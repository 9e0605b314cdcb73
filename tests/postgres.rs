//! The PostgreSQL store, and two service processes sharing one database, on
//! the server `SCIM_REMOVALS_TEST_POSTGRES_URL` names (default: the local
//! one, as user postgres). Each test works in a database of its own, dropped
//! when it ends. Without a server to reach, each test prints
//! `skipping: no PostgreSQL at …` and passes, so the suite still runs on a
//! machine without PostgreSQL.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use scim_removals::removal::{
    GroupId, MemberId, Mode, Outcome, Progress, Removal, RemovalRequest, Status,
};
use scim_removals::sandbox::{Knobs, Member, Org};
use scim_removals::store::{Cancelled, IdempotencyKey, Inserted, RemovalFilter, Store, StoreError};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one test and dropped when the test ends, by panic
/// too.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// The test's own database, or `return` (the test passes) when there is no
/// PostgreSQL to reach.
macro_rules! database_or_skip {
    () => {
        match TestDatabase::create().await {
            Some(database) => database,
            None => return,
        }
    };
}

impl TestDatabase {
    async fn create() -> Option<TestDatabase> {
        let admin_url = std::env::var("SCIM_REMOVALS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_URL.to_string());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(connection) => connection,
            Err(error) => {
                eprintln!(
                    "skipping: no PostgreSQL at {}: {error}",
                    redacted(&admin_url)
                );
                return None;
            }
        };
        let name = format!("scim_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("the test database is created");

        let mut url = url::Url::parse(&admin_url).expect("the test URL parses");
        url.set_path(&format!("/{name}"));
        Some(TestDatabase {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// A store on the test database, as a replica would open it.
    async fn store(&self) -> Store {
        Store::open(&SecretString::from(self.url.clone()))
            .await
            .expect("the store opens")
    }

    async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("the test database answers")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop is not async and may run during a panic: a thread with a
        // runtime of its own does the dropping. FORCE ends the sessions that
        // pools or killed processes left behind.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<an unparsable URL>".into(),
    }
}

fn group(n: u64) -> String {
    format!("0a7e4a10-5c1d-4e2f-8b3a-{n:012x}")
}

fn user(n: u64) -> String {
    format!("6f1c2a8e-0b7d-4c39-9a51-{n:012x}")
}

fn removal(group: &str, members: &[&str]) -> Removal {
    let request = RemovalRequest {
        group_id: GroupId::parse(group).expect("a group id"),
        members: members
            .iter()
            .map(|member| MemberId::parse(member).expect("a member id"))
            .collect(),
        mode: Mode::AllOrNothing,
        dry_run: false,
        client: "governance".into(),
        requested_by: Some("alice@example.com".into()),
        reason: Some("quarterly access review".into()),
    };
    Removal::new(request, Utc::now())
}

fn created_on(mut removal: Removal, day: u32) -> Removal {
    let at = Utc.with_ymd_and_hms(2026, 1, day, 10, 0, 0).unwrap();
    removal.created_at = at;
    removal.updated_at = at;
    removal
}

fn succeeded(removal: &mut Removal) {
    let outcome = Outcome {
        status: Status::Succeeded,
        removed: removal.requested_members.clone(),
        not_members: Vec::new(),
        blocked: Vec::new(),
        violations: Vec::new(),
        would_remove: None,
        attempts: 1,
        conflicts: 0,
        error: None,
    };
    removal.finish(outcome, Utc::now());
}

async fn insert(store: &Store, removal: &Removal) {
    let inserted = store.insert(removal, None, 24).await.expect("inserted");
    assert!(matches!(inserted, Inserted::Created(_)));
}

async fn ids(store: &Store, filter: RemovalFilter) -> Vec<uuid::Uuid> {
    let page = store.list(&filter).await.expect("a page");
    page.items.iter().map(|removal| removal.id).collect()
}

fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        client: "governance".into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
    }
}

const LONG_LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_removal_reads_back_from_postgres_as_stored_before_and_after_it_finishes() {
    let database = database_or_skip!();
    let store = database.store().await;
    let mut stored = removal(&group(1), &[&user(1), &user(2)]);

    insert(&store, &stored).await;
    assert_eq!(store.get(stored.id).await.unwrap(), Some(stored.clone()));

    succeeded(&mut stored);
    store.finish(&stored, None).await.unwrap();
    assert_eq!(store.get(stored.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.get(uuid::Uuid::new_v4()).await.unwrap(), None);
    store.ping().await.expect("the store answers");
}

#[tokio::test]
async fn listing_filters_by_group_member_status_and_time_and_pages_newest_first() {
    let database = database_or_skip!();
    let store = database.store().await;
    let (group_a, group_b) = (group(1), group(2));
    let (ada, grace, alan, barbara) = (user(1), user(2), user(3), user(4));

    let a1 = created_on(removal(&group_a, &[&ada, &grace]), 1);
    let mut a2 = created_on(removal(&group_a, &[&alan]), 2);
    let b1 = created_on(removal(&group_b, &[&ada]), 3);
    let b2 = created_on(removal(&group_b, &[&barbara]), 4);
    let a3 = created_on(removal(&group_a, &[&ada]), 5);
    for stored in [&a1, &a2, &b1, &b2, &a3] {
        insert(&store, stored).await;
    }
    succeeded(&mut a2);
    store.finish(&a2, None).await.unwrap();
    assert!(matches!(
        store.cancel(b2.id).await.unwrap(),
        Cancelled::Cancelled(_)
    ));

    let all = RemovalFilter {
        limit: 50,
        ..RemovalFilter::default()
    };
    let by_group = RemovalFilter {
        group_id: Some(GroupId::parse(&group_a).unwrap()),
        ..all.clone()
    };
    let by_member = RemovalFilter {
        member: Some(MemberId::parse(&ada).unwrap()),
        ..all.clone()
    };
    assert_eq!(ids(&store, by_group.clone()).await, [a3.id, a2.id, a1.id]);
    assert_eq!(ids(&store, by_member.clone()).await, [a3.id, b1.id, a1.id]);
    let both = RemovalFilter {
        member: by_member.member,
        ..by_group
    };
    assert_eq!(ids(&store, both).await, [a3.id, a1.id]);

    let with_status = |status| RemovalFilter {
        status: Some(status),
        ..all.clone()
    };
    assert_eq!(ids(&store, with_status(Status::Succeeded)).await, [a2.id]);
    assert_eq!(ids(&store, with_status(Status::Cancelled)).await, [b2.id]);
    assert_eq!(
        ids(&store, with_status(Status::Queued)).await,
        [a3.id, b1.id, a1.id]
    );

    // Both bounds are inclusive.
    let window = RemovalFilter {
        since: Some(a2.created_at),
        until: Some(b2.created_at),
        ..all.clone()
    };
    assert_eq!(ids(&store, window).await, [b2.id, b1.id, a2.id]);

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let filter = RemovalFilter {
            limit: 2,
            after,
            ..RemovalFilter::default()
        };
        let page = store.list(&filter).await.unwrap();
        pages.push(page.items.iter().map(|r| r.id).collect::<Vec<_>>());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, [vec![a3.id, b2.id], vec![b1.id, a2.id], vec![a1.id]]);
}

#[tokio::test]
async fn an_idempotency_key_replays_its_removal_refuses_another_body_and_expires() {
    let database = database_or_skip!();
    let store = database.store().await;
    let first = removal(&group(1), &[&user(1)]);

    let created = store.insert(&first, Some(&key("k1", "body-1")), 24).await;
    assert!(matches!(created, Ok(Inserted::Created(_))));

    let again = removal(&group(1), &[&user(1)]);
    match store.insert(&again, Some(&key("k1", "body-1")), 24).await {
        Ok(Inserted::Replayed(replayed)) => assert_eq!(replayed.id, first.id),
        other => panic!("expected a replay, got {other:?}"),
    }
    let other_body = removal(&group(1), &[&user(2)]);
    let reused = store
        .insert(&other_body, Some(&key("k1", "body-2")), 24)
        .await;
    assert!(matches!(reused, Ok(Inserted::KeyReused)));

    // Another client's key of the same name is its own.
    let mut elsewhere = key("k1", "body-2");
    elsewhere.client = "auditor".into();
    let own = store.insert(&other_body, Some(&elsewhere), 24).await;
    assert!(matches!(own, Ok(Inserted::Created(_))));

    // With no retention left, the key is free for a new request.
    let later = removal(&group(1), &[&user(3)]);
    let retaken = store.insert(&later, Some(&key("k1", "body-3")), 0).await;
    assert!(matches!(retaken, Ok(Inserted::Created(_))));
    match store.insert(&again, Some(&key("k1", "body-3")), 24).await {
        Ok(Inserted::Replayed(replayed)) => assert_eq!(replayed.id, later.id),
        other => panic!("expected a replay of the newer removal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_inserts_with_one_key_make_one_removal() {
    let database = database_or_skip!();
    let store = Arc::new(database.store().await);
    let target = group(7);

    let inserts = (0..10).map(|_| {
        let store = store.clone();
        let attempt = removal(&target, &[&user(1)]);
        tokio::spawn(async move {
            store
                .insert(&attempt, Some(&key("retry-me", "same-body")), 24)
                .await
                .expect("the store answers")
        })
    });
    let results = futures::future::join_all(inserts).await;

    let mut created = Vec::new();
    let mut replayed = Vec::new();
    for result in results {
        match result.expect("the insert task ran") {
            Inserted::Created(removal) => created.push(removal.id),
            Inserted::Replayed(removal) => replayed.push(removal.id),
            Inserted::KeyReused => panic!("one body cannot reuse its own key"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one insert makes the removal");
    assert_eq!(replayed, vec![created[0]; 9]);
    let filter = RemovalFilter {
        group_id: Some(GroupId::parse(&target).unwrap()),
        limit: 50,
        ..RemovalFilter::default()
    };
    assert_eq!(ids(&store, filter).await, created);
}

#[tokio::test]
async fn only_a_queued_removal_can_be_cancelled() {
    let database = database_or_skip!();
    let store = database.store().await;
    let queued = removal(&group(1), &[&user(1)]);
    let claimed = removal(&group(2), &[&user(1)]);
    insert(&store, &queued).await;
    insert(&store, &claimed).await;

    match store.cancel(queued.id).await.unwrap() {
        Cancelled::Cancelled(removal) => {
            assert_eq!(removal.status, Status::Cancelled);
            assert!(removal.completed_at.is_some());
        }
        other => panic!("expected a cancellation, got {other:?}"),
    }
    let stored = store.get(queued.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Cancelled);
    assert!(matches!(
        store.cancel(queued.id).await.unwrap(),
        Cancelled::NotQueued(_)
    ));

    // A cancelled removal is never claimed; the other one is, and then
    // cannot be cancelled.
    let taken = store.claim_next("worker-a", LONG_LEASE).await.unwrap();
    assert_eq!(taken.map(|claimed| claimed.removal.id), Some(claimed.id));
    match store.cancel(claimed.id).await.unwrap() {
        Cancelled::NotQueued(removal) => assert_eq!(removal.status, Status::Running),
        other => panic!("expected a running removal left alone, got {other:?}"),
    }
    let unknown = store.cancel(uuid::Uuid::new_v4()).await.unwrap();
    assert!(matches!(unknown, Cancelled::NotFound));
}

#[tokio::test]
async fn claims_take_a_group_s_removals_one_at_a_time_in_arrival_order() {
    let database = database_or_skip!();
    let store = database.store().await;
    let first = removal(&group(1), &[&user(1)]);
    let other_group = removal(&group(2), &[&user(1)]);
    let second = removal(&group(1), &[&user(2)]);
    for stored in [&first, &other_group, &second] {
        insert(&store, stored).await;
    }

    let claim = || async { store.claim_next("worker-a", LONG_LEASE).await.unwrap() };
    let claimed = claim().await.expect("the oldest removal");
    assert_eq!(claimed.removal.id, first.id);
    assert_eq!(claimed.removal.status, Status::Running);
    let shown = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        shown.status,
        Status::Running,
        "a claimed removal reads as running"
    );
    assert_eq!(claim().await.map(|c| c.removal.id), Some(other_group.id));
    assert!(
        claim().await.is_none(),
        "group 1 is held by its first removal"
    );

    let mut finished = claimed.removal;
    succeeded(&mut finished);
    store.finish(&finished, None).await.unwrap();
    assert_eq!(claim().await.map(|c| c.removal.id), Some(second.id));
    assert!(claim().await.is_none());
}

/// What the concurrent claimers saw, shared between them.
#[derive(Default)]
struct ClaimLog {
    /// Groups being worked on right now.
    in_flight: HashSet<String>,
    /// Claims of a group while it was already being worked on.
    overlaps: Vec<String>,
    /// Removal ids in the order each group's were claimed.
    order: HashMap<String, Vec<uuid::Uuid>>,
    claimed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_claimers_on_two_stores_claim_each_removal_once_in_group_order() {
    let database = database_or_skip!();
    let stores = [
        Arc::new(database.store().await),
        Arc::new(database.store().await),
    ];
    let mut expected: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
    for n in 0..40 {
        let target = group(n % 10);
        let stored = removal(&target, &[&user(n)]);
        insert(&stores[0], &stored).await;
        expected.entry(target).or_default().push(stored.id);
    }

    let log = Arc::new(Mutex::new(ClaimLog::default()));
    let claimers = (0..8).map(|n| {
        let store = stores[n % 2].clone();
        let log = log.clone();
        tokio::spawn(claim_until_done(store, format!("worker-{n}"), log, 40))
    });
    for claimer in futures::future::join_all(claimers).await {
        claimer.expect("the claimer ran");
    }

    let log = log.lock().unwrap();
    assert_eq!(log.claimed, 40, "each removal is claimed exactly once");
    assert!(
        log.overlaps.is_empty(),
        "groups claimed twice: {:?}",
        log.overlaps
    );
    assert_eq!(
        log.order, expected,
        "each group's removals in arrival order"
    );
}

/// Claims and finishes removals until `total` have been claimed by all the
/// claimers together, noting any group claimed while already in flight.
async fn claim_until_done(
    store: Arc<Store>,
    worker: String,
    log: Arc<Mutex<ClaimLog>>,
    total: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().claimed < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "claiming took over 30 s"
        );
        let Some(claimed) = store.claim_next(&worker, LONG_LEASE).await.unwrap() else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let target = claimed.removal.group_id.to_string();
        {
            let mut log = log.lock().unwrap();
            if !log.in_flight.insert(target.clone()) {
                log.overlaps.push(target.clone());
            }
            log.order
                .entry(target.clone())
                .or_default()
                .push(claimed.removal.id);
            log.claimed += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        // Out of the in-flight set before the store lets the group go, so
        // the next claim of the group is not mistaken for an overlap.
        log.lock().unwrap().in_flight.remove(&target);
        let mut finished = claimed.removal;
        succeeded(&mut finished);
        store.finish(&finished, None).await.unwrap();
    }
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_is_taken_over_and_its_old_worker_is_fenced_off() {
    let database = database_or_skip!();
    let store = database.store().await;
    let stored = removal(&group(1), &[&user(1), &user(2)]);
    insert(&store, &stored).await;
    let short = Duration::from_millis(300);

    let claimed = store.claim_next("worker-a", short).await.unwrap();
    assert_eq!(claimed.map(|c| c.removal.id), Some(stored.id));
    let progress = Progress {
        removed: vec![MemberId::parse(&user(1)).unwrap()],
        attempts: 1,
        ..Progress::default()
    };
    store
        .save_progress(stored.id, "worker-a", &progress, short)
        .await
        .unwrap();
    assert!(
        store
            .claim_next("worker-b", LONG_LEASE)
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = store.claim_next("worker-b", LONG_LEASE).await.unwrap();
    let taken = taken.expect("the expired claim is taken over");
    assert_eq!(taken.removal.id, stored.id);
    assert_eq!(
        taken.progress, progress,
        "the new worker resumes the old one's progress"
    );

    let late = store
        .save_progress(stored.id, "worker-a", &progress, short)
        .await;
    assert!(matches!(late, Err(StoreError::ClaimLost(id)) if id == stored.id));
    store
        .renew_lease(stored.id, "worker-a", LONG_LEASE)
        .await
        .unwrap();
    assert!(
        store
            .claim_next("worker-c", LONG_LEASE)
            .await
            .unwrap()
            .is_none()
    );

    // A removal handed back is taken over at once.
    store.release(stored.id, "worker-b").await.unwrap();
    let resumed = store.claim_next("worker-c", LONG_LEASE).await.unwrap();
    assert_eq!(resumed.map(|c| c.removal.id), Some(stored.id));
}

#[tokio::test]
async fn opening_the_store_again_leaves_another_process_s_live_lease_alone() {
    let database = database_or_skip!();
    let first = database.store().await;
    let stored = removal(&group(1), &[&user(1)]);
    insert(&first, &stored).await;
    assert!(
        first
            .claim_next("worker-a", LONG_LEASE)
            .await
            .unwrap()
            .is_some()
    );

    let second = database.store().await;
    assert!(
        second
            .claim_next("worker-b", LONG_LEASE)
            .await
            .unwrap()
            .is_none(),
        "a second replica must not take over a live claim"
    );
    let shown = second.get(stored.id).await.unwrap().unwrap();
    assert_eq!(shown.status, Status::Running);
}

#[tokio::test]
async fn pruning_drops_old_finished_removals_with_their_keys_and_keeps_the_rest() {
    let database = database_or_skip!();
    let store = database.store().await;
    let mut old = removal(&group(1), &[&user(1)]);
    let mut recent = removal(&group(1), &[&user(2)]);
    let queued = removal(&group(2), &[&user(3)]);
    store
        .insert(&old, Some(&key("old", "body")), 24)
        .await
        .unwrap();
    insert(&store, &recent).await;
    insert(&store, &queued).await;
    for finished in [&mut old, &mut recent] {
        succeeded(finished);
        store.finish(finished, None).await.unwrap();
    }
    sqlx::query(
        "UPDATE removals SET completed_at = now() - interval '10 days' WHERE id = $1::uuid",
    )
    .bind(old.id.to_string())
    .execute(&mut database.connect().await)
    .await
    .unwrap();

    assert_eq!(store.prune(24, 7).await.unwrap(), 1);
    assert_eq!(store.get(old.id).await.unwrap(), None);
    assert!(store.get(recent.id).await.unwrap().is_some());
    assert!(store.get(queued.id).await.unwrap().is_some());
    // The key went with its removal, so it is free again.
    let newer = removal(&group(1), &[&user(4)]);
    let reused = store.insert(&newer, Some(&key("old", "new")), 24).await;
    assert!(matches!(reused, Ok(Inserted::Created(_))));
}

#[tokio::test]
async fn the_api_on_postgres_runs_lists_and_replays_a_removal() {
    let database = database_or_skip!();
    let (org, genesys) = support::sandbox().await;
    let mut settings = support::settings(&genesys);
    settings.store.url = SecretString::from(database.url.clone());
    let app = support::TestApp::start(settings).await;
    let body = json!({"members": [scim_removals::sandbox::DEMO_USER_ADA]});
    let target = scim_removals::sandbox::DEMO_GROUP_SUPPORT;

    let headers = [("prefer", "wait=30"), ("idempotency-key", "api-pg-1")];
    let first = app.remove(target, body.clone(), &headers).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "succeeded");
    let again = app.remove(target, body, &headers).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    let path = format!("/removals?member={}", scim_removals::sandbox::DEMO_USER_ADA);
    let listed: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["id"], first["id"]);
    assert_eq!(org.members(target).map(|members| members.len()), Some(4));
    app.stop().await;
}

#[tokio::test]
async fn webhook_events_go_through_the_postgres_outbox_and_can_be_redelivered() {
    let database = database_or_skip!();
    let (_org, genesys) = support::sandbox().await;
    let receiver = support::receiver::Receiver::start().await;
    let mut settings = support::settings(&genesys);
    settings.store.url = SecretString::from(database.url.clone());
    settings.webhook.url = receiver.url();
    settings.webhook.secret = vec!["whsec_cG9zdGdyZXMtb3V0Ym94".to_string().into()];
    settings.webhook.retry_schedule_ms = vec![100];
    let app = support::TestApp::start(settings).await;
    let body = json!({"members": [scim_removals::sandbox::DEMO_USER_ADA]});

    let removal: Value = app
        .remove_and_wait(scim_removals::sandbox::DEMO_GROUP_SUPPORT, body)
        .await;
    let hits = receiver.wait_for_hits(1, Duration::from_secs(10)).await;

    assert_eq!(hits[0].json()["type"], "scim.group.membership.deleted");
    assert_eq!(hits[0].json()["data"]["id"], removal["id"]);
    // The receiver may see the event a moment before the attempt is saved.
    let mut listed = Value::Null;
    for _ in 0..100 {
        let path = "/webhooks/deliveries?status=delivered";
        listed = app.get(path).await.json().await.unwrap();
        if listed["items"][0].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery = &listed["items"][0];
    assert_eq!(delivery["removal_id"], removal["id"]);
    assert_eq!(delivery["webhook_id"], hits[0].webhook_id());

    let id = delivery["id"].as_str().unwrap();
    let redeliver = app
        .http
        .post(format!("{}/webhooks/deliveries/{id}/redeliver", app.base))
        .bearer_auth(support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), StatusCode::ACCEPTED);
    let hits = receiver.wait_for_hits(2, Duration::from_secs(10)).await;
    assert_eq!(hits[1].webhook_id(), hits[0].webhook_id());
    app.stop().await;
}

// Two service processes on one database.

/// The real binary, serving on a port of its own; killed when dropped.
struct ServiceProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl ServiceProcess {
    fn spawn(name: &str, store_url: &str, genesys: &str, dir: &Path) -> ServiceProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_scim-removals"));
        // Only what this test sets may configure the child.
        for (variable, _) in std::env::vars() {
            if variable.starts_with("SCIM_REMOVALS") || variable.starts_with("GENESYSCLOUD") {
                command.env_remove(variable);
            }
        }
        command
            .arg("serve")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .current_dir(dir)
            .env("SCIM_REMOVALS__STORE__URL", store_url)
            .env("SCIM_REMOVALS__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("SCIM_REMOVALS__GENESYS__API_BASE_URL", genesys)
            .env("GENESYSCLOUD_OAUTHCLIENT_ID", "sandbox-client")
            .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "sandbox-secret")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("a log file"))
            .stderr(log_file);
        let child = command.spawn().expect("the service binary starts");
        ServiceProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited ({status}): {}", self.log_text());
            }
            let ready = http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|answer| answer.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service was not ready within 30 s: {}", self.log_text());
    }

    /// The ids of the removals this process finished, from its audit events.
    fn finished_removals(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == "removal finished")
            .filter_map(|event| event["removal_id"].as_str().map(str::to_string))
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file with the test client and fast retries; the rest comes
/// from the environment each process gets.
fn write_config(dir: &Path) {
    let token_sha256 = scim_removals::http::token_sha256(support::TOKEN);
    let config = format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
         [genesys]\nrequest_timeout_ms = 5000\nmax_requests_per_minute = 60000\n\
         max_burst = 100\n\n\
         [genesys.retry]\nbase_delay_ms = 5\nmax_delay_ms = 50\n\n\
         [worker]\nlease_s = 10\n\n\
         [[api.clients]]\nname = \"governance\"\ntoken_sha256 = \"{token_sha256}\"\n\
         scopes = [\"removals:write\", \"removals:read\"]\n"
    );
    let mut file = std::fs::File::create(dir.join("config.toml")).expect("a config file");
    file.write_all(config.as_bytes())
        .expect("the config is written");
}

const GROUPS: u64 = 5;
const REMOVALS_PER_GROUP: u64 = 6;
const MEMBERS_PER_GROUP: u64 = 8;

/// Groups of users of their own, numbered by group: group g holds users
/// g*100 + 1 ..= g*100 + MEMBERS_PER_GROUP.
fn seed_groups(org: &Org) -> Vec<String> {
    (1..=GROUPS)
        .map(|g| {
            let members: Vec<Member> = (1..=MEMBERS_PER_GROUP)
                .map(|m| {
                    let id = user(g * 100 + m);
                    org.add_user(&id, &format!("user.{g}.{m}"), &["Employee"]);
                    Member::user(&id)
                })
                .collect();
            let id = group(g);
            org.put_group(&id, &format!("Shared group {g}"), &members);
            id
        })
        .collect()
}

/// Counts PATCHes of a group that overlap another of the same group. The
/// hook holds each PATCH open a little, so an overlap would be caught.
fn watch_patch_overlaps(org: &Org) -> Arc<Mutex<Vec<String>>> {
    let overlaps = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(Mutex::new(HashSet::<String>::new()));
    let seen = overlaps.clone();
    org.set_before_patch(Some(Arc::new(move |_org: &Org, group_id: &str| {
        if !in_flight.lock().unwrap().insert(group_id.to_string()) {
            seen.lock().unwrap().push(group_id.to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
        in_flight.lock().unwrap().remove(group_id);
    })));
    overlaps
}

/// Submits a group's removals in pairs, one to each process at the same
/// moment, so both wake up to claim from the group at once; returns each
/// removal's id with the member it removes.
async fn submit_in_pairs(
    http: &reqwest::Client,
    bases: &[String],
    g: u64,
) -> Vec<(String, String)> {
    let mut submitted = Vec::new();
    for pair in 0..REMOVALS_PER_GROUP / 2 {
        let members = [user(g * 100 + 2 * pair + 1), user(g * 100 + 2 * pair + 2)];
        let posts = bases.iter().zip(&members).map(|(base, member)| {
            http.post(format!("{base}/groups/{}/removals", group(g)))
                .bearer_auth(support::TOKEN)
                .json(&json!({"members": [member], "reason": "two replicas"}))
                .send()
        });
        for (answer, member) in futures::future::join_all(posts)
            .await
            .into_iter()
            .zip(members)
        {
            let answer = answer.expect("the service answers");
            assert_eq!(answer.status(), StatusCode::ACCEPTED);
            let removal: Value = answer.json().await.unwrap();
            submitted.push((removal["id"].as_str().unwrap().to_string(), member));
        }
    }
    submitted
}

/// Records every claim (every change to a worker in `claimed_by`) in a
/// table of the test's, and makes it hold its row for a while, so that claims
/// racing in the two processes overlap in the database, where a claim that is
/// not race-free would give one removal to both.
async fn log_and_slow_down_claims(database: &TestDatabase) {
    let mut connection = database.connect().await;
    let statements = [
        "CREATE TABLE test_claims (seq BIGINT NOT NULL, worker TEXT NOT NULL)",
        "CREATE FUNCTION test_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO test_claims VALUES (NEW.seq, NEW.claimed_by);
             PERFORM pg_sleep(0.03);
             RETURN NEW;
         END $$",
        "CREATE TRIGGER test_claim BEFORE UPDATE ON removals FOR EACH ROW
         WHEN (NEW.claimed_by IS NOT NULL AND NEW.claimed_by IS DISTINCT FROM OLD.claimed_by)
         EXECUTE FUNCTION test_claim()",
    ];
    for statement in statements {
        sqlx::raw_sql(statement)
            .execute(&mut connection)
            .await
            .expect("the claim log is installed");
    }
}

/// How many workers claimed each removal, and how many workers claimed at
/// all, from the log [`log_and_slow_down_claims`] keeps.
async fn claims(database: &TestDatabase) -> (Vec<i64>, i64) {
    let mut connection = database.connect().await;
    let per_removal =
        sqlx::query_scalar("SELECT COUNT(*) FROM test_claims GROUP BY seq ORDER BY seq")
            .fetch_all(&mut connection)
            .await
            .expect("the claim log");
    let workers = sqlx::query_scalar("SELECT COUNT(DISTINCT worker) FROM test_claims")
        .fetch_one(&mut connection)
        .await
        .expect("the claim log");
    (per_removal, workers)
}

/// The group's removals in arrival order, as the audit trail lists them.
async fn arrival_order(http: &reqwest::Client, base: &str, g: u64) -> Vec<Value> {
    let listed: Value = http
        .get(format!("{base}/removals?group_id={}&limit=50", group(g)))
        .bearer_auth(support::TOKEN)
        .send()
        .await
        .expect("the service answers")
        .json()
        .await
        .expect("a page");
    let mut items = listed["items"].as_array().cloned().unwrap_or_default();
    items.reverse();
    items
}

async fn wait_final(http: &reqwest::Client, base: &str, id: &str) -> Value {
    for _ in 0..600 {
        let removal: Value = http
            .get(format!("{base}/removals/{id}"))
            .bearer_auth(support::TOKEN)
            .send()
            .await
            .expect("the service answers")
            .json()
            .await
            .expect("a removal");
        if !matches!(removal["status"].as_str(), Some("queued" | "running")) {
            return removal;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("removal {id} did not finish within 30 s");
}

fn completed_at(removal: &Value) -> DateTime<Utc> {
    removal["completed_at"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .expect("a finished removal has completed_at")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_service_processes_on_one_database_share_groups_without_racing_each_other() {
    let database = database_or_skip!();
    let (org, genesys) = support::sandbox().await;
    let groups = seed_groups(&org);
    // Slow answers widen every window in which two workers could collide.
    org.set_knobs(Knobs {
        latency_ms: 10,
        ..Knobs::default()
    });
    let overlaps = watch_patch_overlaps(&org);
    let dir = std::env::temp_dir().join(format!("scim-removals-pg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    write_config(&dir);

    let http = reqwest::Client::new();
    let mut processes = [
        ServiceProcess::spawn("a", &database.url, &genesys, &dir),
        ServiceProcess::spawn("b", &database.url, &genesys, &dir),
    ];
    for process in &mut processes {
        process.wait_ready(&http).await;
    }
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    log_and_slow_down_claims(&database).await;

    let per_group =
        futures::future::join_all((1..=GROUPS).map(|g| submit_in_pairs(&http, &bases, g))).await;

    for submitted in &per_group {
        for (id, member) in submitted {
            let removal = wait_final(&http, &bases[0], id).await;
            assert_eq!(removal["status"], "succeeded", "{removal}");
            assert_eq!(removal["removed"], json!([member]));
            assert_eq!(removal["conflicts"], 0);
        }
    }
    for g in 1..=GROUPS {
        let in_order = arrival_order(&http, &bases[1], g).await;
        assert_eq!(in_order.len() as u64, REMOVALS_PER_GROUP);
        let completed: Vec<DateTime<Utc>> = in_order.iter().map(completed_at).collect();
        assert!(
            completed.windows(2).all(|pair| pair[0] < pair[1]),
            "group {g}: removals finished out of arrival order: {completed:?}"
        );
    }

    let patches: Vec<_> = org
        .requests()
        .into_iter()
        .filter(|request| request.method == "PATCH")
        .collect();
    assert_eq!(
        patches.len() as u64,
        GROUPS * REMOVALS_PER_GROUP,
        "one PATCH each"
    );
    assert!(
        patches
            .iter()
            .all(|patch| (200..300).contains(&patch.status)),
        "no version conflict: {:?}",
        patches.iter().map(|patch| patch.status).collect::<Vec<_>>()
    );
    assert!(
        overlaps.lock().unwrap().is_empty(),
        "two PATCHes of one group at once"
    );
    for (g, id) in (1..=GROUPS).zip(&groups) {
        let left: Vec<String> = (REMOVALS_PER_GROUP + 1..=MEMBERS_PER_GROUP)
            .map(|m| user(g * 100 + m))
            .collect();
        assert_eq!(
            org.members(id),
            Some(left),
            "group {g} keeps exactly the rest"
        );
    }

    // Each removal was claimed once, and run in one process (one audit
    // event each), and both processes took part.
    let total = GROUPS * REMOVALS_PER_GROUP;
    let (claims_per_removal, workers) = claims(&database).await;
    assert_eq!(
        claims_per_removal,
        vec![1; total as usize],
        "claims per removal"
    );
    assert_eq!(workers, 2, "both processes claimed removals");
    let runs: Vec<String> = processes
        .iter()
        .flat_map(ServiceProcess::finished_removals)
        .collect();
    let distinct: HashSet<&String> = runs.iter().collect();
    assert_eq!(runs.len() as u64, total, "runs: {runs:?}");
    assert_eq!(distinct.len(), runs.len(), "a removal ran twice");

    drop(processes);
    let _ = std::fs::remove_dir_all(&dir);
}
