//! The Patroni calls each step makes, against [`crate::patroni::fake::Fake`].

use super::plan::{Desired, Slots};
use super::step::{Input, Memo, Note, Outcome, Target, step};
use crate::patroni::fake::Fake;
use crate::patroni::{Error, Status};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::Duration;

const LEADER: &str = "acid-a-0";
const LEADER_IP: &str = "127.10.0.1";
const REPLICA_IP: &str = "127.10.0.2";

fn members() -> Vec<Target> {
    vec![
        Target {
            name: LEADER.into(),
            ip: LEADER_IP.into(),
        },
        Target {
            name: "acid-a-1".into(),
            ip: REPLICA_IP.into(),
        },
    ]
}

fn dcs() -> Value {
    json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "failsafe_mode": false,
        "postgresql": {"parameters": {"max_connections": 100}}})
}

fn fake(config: Value) -> Fake {
    let fake = Fake::default();
    for ip in [LEADER_IP, REPLICA_IP] {
        fake.configs
            .lock()
            .unwrap()
            .insert(ip.into(), Ok(config.clone()));
    }
    pending(&fake, false, false);
    fake
}

fn pending(fake: &Fake, leader: bool, replica: bool) {
    let mut statuses = fake.statuses.lock().unwrap();
    for (ip, pending) in [(LEADER_IP, leader), (REPLICA_IP, replica)] {
        statuses.insert(
            ip.into(),
            Ok(Status {
                state: "running".into(),
                pending_restart: pending,
                ..Status::default()
            }),
        );
    }
}

fn desired(ttl: Option<u32>, max_connections: Option<&str>) -> Desired {
    let mut d = Desired {
        ttl,
        ..Desired::default()
    };
    if let Some(m) = max_connections {
        d.parameters.insert("max_connections".into(), m.into());
    }
    d
}

/// One step; the calls it made (and forgets them) and the notes it published.
async fn run(
    fake: &Fake,
    memo: &Memo,
    desired: &Desired,
    repair: Duration,
) -> (Outcome, Vec<String>, Vec<Note>) {
    let members = members();
    let remembered = Slots::new();
    let input = Input {
        cluster: "uid-a",
        generation: Some(1),
        desired,
        leader: LEADER,
        members: &members,
        remembered: &remembered,
        repair_period: repair,
    };
    let notes = Mutex::new(Vec::new());
    let notify = |n: Note| notes.lock().unwrap().push(n);
    let outcome = step(fake, memo, &input, &notify).await;
    let calls = std::mem::take(&mut *fake.calls.lock().unwrap());
    (outcome, calls, notes.into_inner().unwrap())
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn an_unchanged_cluster_is_read_once_then_costs_no_call() {
    let fake = fake(dcs());
    let memo = Memo::default();
    let want = desired(None, Some("100"));
    let (outcome, calls, notes) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(
        calls,
        [
            "GET /config 127.10.0.1",
            "GET /patroni 127.10.0.1",
            "GET /patroni 127.10.0.2"
        ]
    );
    assert_eq!(outcome.requeue, None);
    assert!(notes.is_empty(), "{notes:?}");
    for _ in 0..3 {
        let (outcome, calls, _) = run(&fake, &memo, &want, HOUR).await;
        assert!(
            calls.is_empty(),
            "an unchanged cluster made calls: {calls:?}"
        );
        assert_eq!(outcome.requeue, None);
    }
    // After repair_period it is read again.
    let (_, calls, _) = run(&fake, &memo, &want, Duration::ZERO).await;
    assert_eq!(
        calls.first().map(String::as_str),
        Some("GET /config 127.10.0.1")
    );
}

#[tokio::test]
async fn a_ttl_change_is_patched_and_restarts_nothing() {
    let fake = fake(dcs());
    let memo = Memo::default();
    let want = desired(Some(20), None);
    let (outcome, calls, notes) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(
        calls,
        [
            "GET /config 127.10.0.1",
            r#"PATCH /config 127.10.0.1 {"ttl":20}"#
        ]
    );
    // loop_wait (10 s in force) + 2 s before pending restarts are looked at.
    assert_eq!(outcome.requeue, Some(Duration::from_secs(12)));
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].reason, "PatroniConfigPatched");
    assert!(notes[0].text.contains("ttl 30 → 20"), "{}", notes[0].text);
    // Within the wait: no call.
    let (outcome, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert!(
        outcome
            .requeue
            .is_some_and(|r| r <= Duration::from_secs(12))
    );
    // After it: nobody pending, settled.
    memo.expire("uid-a");
    let (outcome, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(
        calls,
        ["GET /patroni 127.10.0.1", "GET /patroni 127.10.0.2"]
    );
    assert_eq!(outcome.requeue, None);
    let (_, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert!(calls.is_empty(), "{calls:?}");
}

/// Patches `max_connections` to `to`, then steps through the restarts (both members pending
/// until restarted); returns the restarted addresses in order.
async fn restarts_after(to: &str) -> Vec<String> {
    let fake = fake(dcs());
    let memo = Memo::default();
    let want = desired(None, Some(to));
    let (_, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(
        calls[1],
        format!(
            r#"PATCH /config 127.10.0.1 {{"postgresql":{{"parameters":{{"max_connections":"{to}"}}}}}}"#
        )
    );
    pending(&fake, true, true);
    let mut restarted = Vec::new();
    for _ in 0..4 {
        memo.expire("uid-a");
        let (outcome, calls, notes) = run(&fake, &memo, &want, HOUR).await;
        let restarts: Vec<String> = calls
            .iter()
            .filter_map(|c| c.strip_prefix("POST /restart ").map(String::from))
            .collect();
        assert!(restarts.len() <= 1, "one restart per step: {calls:?}");
        let Some(ip) = restarts.first() else {
            assert_eq!(outcome.requeue, None, "settled");
            assert!(outcome.pending.is_empty());
            break;
        };
        // Events before and after; one member each step, loop_wait between.
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0]
                .text
                .starts_with("restarting Postgres server within")
        );
        assert!(
            notes[1]
                .text
                .starts_with("Postgres server restart done for")
        );
        assert_eq!(outcome.requeue, Some(Duration::from_secs(10)));
        restarted.push(ip.clone());
        // Restarted: no longer pending.
        let leader_pending = *ip != LEADER_IP && !restarted.iter().any(|r| r == LEADER_IP);
        let replica_pending = *ip != REPLICA_IP && !restarted.iter().any(|r| r == REPLICA_IP);
        pending(&fake, leader_pending, replica_pending);
    }
    restarted
}

#[tokio::test]
async fn an_increase_restarts_the_replica_first() {
    assert_eq!(restarts_after("200").await, [REPLICA_IP, LEADER_IP]);
}

#[tokio::test]
async fn a_decrease_restarts_the_primary_first() {
    assert_eq!(restarts_after("50").await, [LEADER_IP, REPLICA_IP]);
}

#[tokio::test]
async fn a_member_still_pending_gets_a_second_round_then_a_warning() {
    let fake = fake(dcs());
    let memo = Memo::default();
    let want = desired(None, Some("200"));
    run(&fake, &memo, &want, HOUR).await;
    pending(&fake, false, true); // the replica never stops waiting
    let mut restarts = 0;
    let mut last = Vec::new();
    for _ in 0..4 {
        memo.expire("uid-a");
        let (_, calls, notes) = run(&fake, &memo, &want, HOUR).await;
        restarts += calls
            .iter()
            .filter(|c| c.starts_with("POST /restart"))
            .count();
        last.extend(notes);
    }
    assert_eq!(restarts, 2, "two rounds, then left for the repair");
    assert!(
        last.iter()
            .any(|n| n.warning && n.reason == "PendingRestart"),
        "{last:?}"
    );
    let (_, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_failed_call_warns_once_and_backs_off() {
    let fake = fake(dcs());
    let down = |ip: &str| Error::Unreachable {
        address: ip.into(),
        call: "GET /config",
        reason: "connection refused".into(),
    };
    for ip in [LEADER_IP, REPLICA_IP] {
        fake.configs
            .lock()
            .unwrap()
            .insert(ip.into(), Err(down(ip)));
    }
    let memo = Memo::default();
    let want = desired(Some(20), None);
    let (outcome, calls, notes) = run(&fake, &memo, &want, HOUR).await;
    // The leader first, then the other member.
    assert_eq!(calls, ["GET /config 127.10.0.1", "GET /config 127.10.0.2"]);
    assert_eq!(outcome.requeue, Some(Duration::from_secs(5)));
    assert_eq!(notes.len(), 1);
    assert!(notes[0].warning && notes[0].reason == "PatroniConfigFailed");
    // Within the back-off: no call.
    let (_, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert!(calls.is_empty(), "{calls:?}");
    // The same failure again: a longer wait, no second warning.
    memo.expire("uid-a");
    let (outcome, _, notes) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(outcome.requeue, Some(Duration::from_secs(10)));
    assert!(notes.is_empty(), "{notes:?}");
    // The replica answers: read from it, patched through it.
    fake.configs
        .lock()
        .unwrap()
        .insert(REPLICA_IP.into(), Ok(dcs()));
    memo.expire("uid-a");
    let (_, calls, _) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(calls[2], r#"PATCH /config 127.10.0.2 {"ttl":20}"#);
}

#[tokio::test]
async fn a_refused_patch_is_retried_and_an_empty_dcs_is_skipped() {
    let fake = fake(dcs());
    *fake.write_result.lock().unwrap() = Some(Error::Refused {
        address: LEADER_IP.into(),
        call: "PATCH /config",
        status: 500,
        message: "boom".into(),
    });
    let memo = Memo::default();
    let want = desired(Some(20), None);
    let (outcome, _, notes) = run(&fake, &memo, &want, HOUR).await;
    assert_eq!(outcome.requeue, Some(Duration::from_secs(5)));
    assert!(notes[0].text.contains("could not patch"), "{notes:?}");

    let empty = fake_empty();
    let (outcome, calls, notes) = run(&empty, &Memo::default(), &want, HOUR).await;
    assert_eq!(calls, ["GET /config 127.10.0.1"]);
    assert!(outcome.requeue.is_some());
    assert!(notes[0].text.contains("empty"), "{notes:?}");
}

fn fake_empty() -> Fake {
    fake(json!({}))
}

#[tokio::test]
async fn a_changed_manifest_or_leader_is_read_again() {
    let fake = fake(dcs());
    let memo = Memo::default();
    run(&fake, &memo, &desired(None, None), HOUR).await;
    let (_, calls, _) = run(&fake, &memo, &desired(None, None), HOUR).await;
    assert!(calls.is_empty());
    let (_, calls, _) = run(&fake, &memo, &desired(Some(20), None), HOUR).await;
    assert_eq!(calls[0], "GET /config 127.10.0.1");
}
