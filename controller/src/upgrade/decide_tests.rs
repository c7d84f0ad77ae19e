use super::decide::*;
use chrono::{TimeZone, Utc};
use common::maintenance::Gate;

fn pod(name: &str, pgversion: &str) -> Pod {
    Pod {
        name: name.into(),
        flagged: false,
        pgversion: Some(pgversion.into()),
        terminating: false,
    }
}

fn member(name: &str, role: &str, state: &str, lag: Option<u64>) -> Member {
    Member {
        name: name.into(),
        role: role.into(),
        state: state.into(),
        lag,
    }
}

struct Case {
    mode: Mode,
    team_allowed: bool,
    desired: u32,
    running: Option<u32>,
    members: Vec<Member>,
    paused: bool,
    pods: Vec<Pod>,
    failed_at: Option<&'static str>,
    gate: Gate,
}

/// A two-member cluster running 14 whose pods carry PGVERSION 15: ready to upgrade.
fn ready() -> Case {
    Case {
        mode: Mode::Manual,
        team_allowed: false,
        desired: 15,
        running: Some(140012),
        members: vec![
            member("acid-0", "leader", "running", None),
            member("acid-1", "replica", "streaming", Some(0)),
        ],
        paused: false,
        pods: vec![pod("acid-0", "15"), pod("acid-1", "15")],
        failed_at: None,
        gate: Gate::Open,
    }
}

impl Case {
    fn decide(&self) -> Decision {
        decide(&Input {
            mode: self.mode,
            team_allowed: self.team_allowed,
            desired: self.desired,
            primary: self.running.map(|v| ("acid-0", v)),
            members: Ok(&self.members),
            paused: self.paused,
            pods: &self.pods,
            failed_at: self.failed_at,
            gate: self.gate,
        })
    }
}

fn waits(case: &Case, part: &str) {
    match case.decide() {
        Decision::Wait(why) => assert!(why.contains(part), "{why:?} should say {part:?}"),
        other => panic!("expected a wait saying {part:?}, got {other:?}"),
    }
}

#[test]
fn a_ready_cluster_is_upgraded_on_its_primary_with_the_pod_count() {
    assert_eq!(
        ready().decide(),
        Decision::Upgrade {
            pod: "acid-0".into(),
            members: 2,
            from: 14,
            to: 15
        }
    );
    let full = Case {
        mode: Mode::Full,
        ..ready()
    };
    assert!(matches!(full.decide(), Decision::Upgrade { .. }));
}

#[test]
fn mode_off_upgrades_only_allowed_teams() {
    let off = Case {
        mode: Mode::Off,
        ..ready()
    };
    assert_eq!(off.decide(), Decision::Nothing);
    let allowed = Case {
        mode: Mode::Off,
        team_allowed: true,
        ..ready()
    };
    assert!(matches!(allowed.decide(), Decision::Upgrade { .. }));
}

#[test]
fn the_desired_major_running_needs_nothing_and_clears_a_failure() {
    let done = Case {
        running: Some(150004),
        ..ready()
    };
    assert_eq!(done.decide(), Decision::Nothing);
    let newer = Case {
        running: Some(160000),
        ..ready()
    };
    assert_eq!(newer.decide(), Decision::Nothing, "never a downgrade");
    let reverted = Case {
        running: Some(140012),
        desired: 14,
        failed_at: Some("2026-12-06T10:00:00Z"),
        ..ready()
    };
    assert_eq!(reverted.decide(), Decision::ClearFailure);
}

#[test]
fn a_failure_annotation_blocks_further_attempts() {
    waits(
        &Case {
            failed_at: Some("2026-12-06T10:00:00Z"),
            ..ready()
        },
        "failed at 2026-12-06T10:00:00Z",
    );
}

#[test]
fn outside_the_windows_it_waits_for_the_next() {
    let next = Utc.with_ymd_and_hms(2026, 12, 7, 1, 0, 0).unwrap();
    waits(
        &Case {
            gate: Gate::Closed { next },
            ..ready()
        },
        "2026-12-07T01:00Z",
    );
}

#[test]
fn it_waits_for_the_rolling_update_and_healthy_members() {
    let mut flagged = ready();
    flagged.pods[1].flagged = true;
    waits(&flagged, "acid-1 is not yet recreated");
    let old_env = Case {
        pods: vec![pod("acid-0", "14"), pod("acid-1", "15")],
        ..ready()
    };
    waits(&old_env, "acid-0 is not yet recreated with PGVERSION 15");
    let mut deleting = ready();
    deleting.pods[0].terminating = true;
    waits(&deleting, "being deleted");
    let mut starting = ready();
    starting.members[1].state = "starting".into();
    waits(&starting, "not streaming");
    let mut lagging = ready();
    lagging.members[1].lag = Some(MAX_LAG + 1);
    waits(&lagging, "lags");
    let mut unknown = ready();
    unknown.members[1].lag = None;
    waits(&unknown, "lag is unknown");
    let mut missing = ready();
    missing.members.pop();
    waits(&missing, "1 member(s) for 2 pod(s)");
    waits(
        &Case {
            paused: true,
            ..ready()
        },
        "paused",
    );
    let mut stopped = ready();
    stopped.members[0].state = "stopped".into();
    waits(&stopped, "primary acid-0");
}

#[test]
fn without_a_primary_or_on_a_standby_it_is_unknown() {
    let unknown = |case: &Case, part: &str| match case.decide() {
        Decision::Unknown(why) => assert!(why.contains(part), "{why:?}"),
        other => panic!("expected unknown, got {other:?}"),
    };
    unknown(
        &Case {
            running: None,
            ..ready()
        },
        "no member runs as primary",
    );
    let mut standby = ready();
    standby.members[0].role = "standby_leader".into();
    unknown(&standby, "standby");
    let unanswered = decide(&Input {
        mode: Mode::Manual,
        team_allowed: false,
        desired: 15,
        primary: None,
        members: Err("connection refused"),
        paused: false,
        pods: &[],
        failed_at: None,
        gate: Gate::Open,
    });
    assert_eq!(
        unanswered,
        Decision::Unknown("Patroni did not answer: connection refused".into())
    );
}

#[test]
fn a_template_without_pgversion_is_not_waited_for() {
    let mut no_env = ready();
    for p in &mut no_env.pods {
        p.pgversion = None;
    }
    assert!(matches!(no_env.decide(), Decision::Upgrade { .. }));
}

#[test]
fn a_single_member_is_upgraded_alone() {
    let single = Case {
        members: vec![member("acid-0", "leader", "running", None)],
        pods: vec![pod("acid-0", "15")],
        ..ready()
    };
    assert_eq!(
        single.decide(),
        Decision::Upgrade {
            pod: "acid-0".into(),
            members: 1,
            from: 14,
            to: 15
        }
    );
}

#[test]
fn modes_parse_with_manual_as_default() {
    assert_eq!(Mode::parse("off"), Mode::Off);
    assert_eq!(Mode::parse("full"), Mode::Full);
    assert_eq!(Mode::parse("manual"), Mode::Manual);
}

#[test]
fn an_interrupted_run_is_judged_only_once_patroni_is_resumed() {
    assert_eq!(
        interrupted(Some(true), Some(14), 15),
        Interrupted::MayStillRun
    );
    assert_eq!(interrupted(None, None, 15), Interrupted::MayStillRun);
    assert_eq!(interrupted(Some(false), None, 15), Interrupted::MayStillRun);
    assert_eq!(
        interrupted(Some(false), Some(15), 15),
        Interrupted::Succeeded
    );
    assert_eq!(interrupted(Some(false), Some(14), 15), Interrupted::Failed);
}
