use super::*;

const MIB: u64 = 1 << 20;

fn pod(name: &str, flagged: bool) -> Pod {
    Pod {
        name: name.into(),
        flagged,
        ready: true,
        terminating: false,
    }
}

fn member(name: &str, role: &str, state: &str, lag: Option<u64>) -> Member {
    Member {
        name: name.into(),
        role: role.into(),
        state: state.into(),
        lag,
        ..Default::default()
    }
}

fn leader(name: &str) -> Member {
    member(name, "leader", "running", None)
}

fn streaming(name: &str, lag: u64) -> Member {
    member(name, "replica", "streaming", Some(lag))
}

fn cluster(members: Vec<Member>) -> Cluster {
    Cluster {
        members,
        pause: false,
    }
}

fn run(pods: &[Pod], cluster: &Cluster) -> Action {
    next_action(&Input {
        instances: pods.len(),
        pods,
        patroni: Ok(cluster),
        max_lag: 32 * MIB,
        synchronous_mode: false,
        waiting_for: Duration::ZERO,
        timeout: Duration::from_secs(600),
    })
}

fn recreate(pod: &str) -> Action {
    Action::Recreate {
        pod: pod.into(),
        downtime: false,
    }
}

fn waits(action: &Action, fragment: &str) {
    match action {
        Action::Wait(why) => assert!(why.contains(fragment), "{why:?} lacks {fragment:?}"),
        other => panic!("expected a wait for {fragment:?}, got {other:?}"),
    }
}

#[test]
fn nothing_flagged_is_idle_whatever_the_members_do() {
    let pods = [pod("a-0", false), pod("a-1", false)];
    assert_eq!(run(&pods, &cluster(vec![])), Action::Idle);
}

#[test]
fn a_three_member_rollout_goes_replica_replica_switchover_old_master() {
    let all = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        streaming("a-2", 0),
    ]);
    let mut pods = vec![pod("a-0", true), pod("a-1", true), pod("a-2", true)];
    assert_eq!(run(&pods, &all), recreate("a-1"));

    // a-1 is being deleted, then recreated and bootstrapping: wait.
    pods[1].terminating = true;
    waits(&run(&pods, &all), "a-1 is being deleted");
    pods[1] = pod("a-1", false);
    pods[1].ready = false;
    let creating = cluster(vec![
        leader("a-0"),
        member("a-1", "replica", "creating replica", None),
        streaming("a-2", 0),
    ]);
    waits(&run(&pods, &creating), "replica a-1 is creating replica");
    pods[1].ready = true;
    assert_eq!(run(&pods, &all), recreate("a-2"));

    pods[2] = pod("a-2", false);
    let lagging = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        streaming("a-2", 64 * MIB),
    ]);
    waits(&run(&pods, &lagging), "a-2 lags");
    let caught_up = cluster(vec![
        leader("a-0"),
        streaming("a-1", 100),
        streaming("a-2", 0),
    ]);
    assert_eq!(
        run(&pods, &caught_up),
        Action::Switchover {
            leader: "a-0".into(),
            candidate: "a-2".into()
        }
    );

    // After the switchover the old master is a flagged replica like any other.
    let switched = cluster(vec![
        streaming("a-0", 0),
        streaming("a-1", 0),
        leader("a-2"),
    ]);
    assert_eq!(run(&pods, &switched), recreate("a-0"));
    pods[0] = pod("a-0", false);
    assert_eq!(run(&pods, &switched), Action::Idle);
}

#[test]
fn a_synchronous_standby_is_preferred_and_required_in_synchronous_mode() {
    let pods = [pod("a-0", true), pod("a-1", false), pod("a-2", false)];
    let with_sync = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        member("a-2", "sync_standby", "streaming", Some(MIB)),
    ]);
    assert_eq!(
        run(&pods, &with_sync),
        Action::Switchover {
            leader: "a-0".into(),
            candidate: "a-2".into()
        }
    );
    let without = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        streaming("a-2", 0),
    ]);
    let action = next_action(&Input {
        instances: 3,
        pods: &pods,
        patroni: Ok(&without),
        max_lag: 32 * MIB,
        synchronous_mode: true,
        waiting_for: Duration::ZERO,
        timeout: Duration::from_secs(600),
    });
    waits(&action, "no replica is a synchronous standby");
}

#[test]
fn one_instance_is_recreated_with_downtime_and_no_switchover() {
    let pods = [pod("a-0", true)];
    assert_eq!(
        run(&pods, &cluster(vec![leader("a-0")])),
        Action::Recreate {
            pod: "a-0".into(),
            downtime: true
        }
    );
}

#[test]
fn two_instances_with_the_replica_missing_wait_instead_of_downtime() {
    let pods = [pod("a-0", true)];
    let action = next_action(&Input {
        instances: 2,
        pods: &pods,
        patroni: Ok(&cluster(vec![leader("a-0")])),
        max_lag: 32 * MIB,
        synchronous_mode: false,
        waiting_for: Duration::ZERO,
        timeout: Duration::from_secs(600),
    });
    waits(&action, "1 of 2 pods exist");
}

#[test]
fn a_pod_that_never_becomes_ready_is_reported_stuck_after_the_timeout() {
    let mut pods = vec![pod("a-0", true), pod("a-1", false), pod("a-2", true)];
    pods[1].ready = false;
    let members = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        streaming("a-2", 0),
    ]);
    let input = |waiting_for| Input {
        instances: 3,
        pods: &pods,
        patroni: Ok(&members),
        max_lag: 32 * MIB,
        synchronous_mode: false,
        waiting_for,
        timeout: Duration::from_secs(600),
    };
    waits(
        &next_action(&input(Duration::from_secs(30))),
        "a-1 is not ready",
    );
    match next_action(&input(Duration::from_secs(601))) {
        Action::Stuck(why) => assert!(why.contains("a-1 is not ready") && why.contains("601s")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_candidate_lost_mid_switchover_gives_way_to_another_or_a_wait() {
    let pods = [pod("a-0", true), pod("a-1", false), pod("a-2", false)];
    // The chosen a-1 crashed after the switchover was asked for: a-2 is healthy, but no
    // switchover while a replica is down.
    let lost = cluster(vec![
        leader("a-0"),
        member("a-1", "replica", "stopped", None),
        streaming("a-2", 0),
    ]);
    waits(&run(&pods, &lost), "replica a-1 is stopped");
    // Once its pod is gone and being recreated, still wait.
    let gone = [pod("a-0", true), pod("a-2", false)];
    let action = next_action(&Input {
        instances: 3,
        pods: &gone,
        patroni: Ok(&lost),
        max_lag: 32 * MIB,
        synchronous_mode: false,
        waiting_for: Duration::ZERO,
        timeout: Duration::from_secs(600),
    });
    waits(&action, "2 of 3 pods exist");
    // Back and streaming: the least lagging one is chosen.
    let back = cluster(vec![
        leader("a-0"),
        streaming("a-1", 10),
        streaming("a-2", 5),
    ]);
    assert_eq!(
        run(&pods, &back),
        Action::Switchover {
            leader: "a-0".into(),
            candidate: "a-2".into()
        }
    );
}

#[test]
fn a_manual_switchover_during_the_rollout_is_followed() {
    // a-2 was already recreated; a user switched the leader from a-0 to the flagged a-1.
    let pods = [pod("a-0", true), pod("a-1", true), pod("a-2", false)];
    let switched = cluster(vec![
        streaming("a-0", 0),
        leader("a-1"),
        streaming("a-2", 0),
    ]);
    assert_eq!(run(&pods, &switched), recreate("a-0"));
    let pods = [pod("a-0", false), pod("a-1", true), pod("a-2", false)];
    assert_eq!(
        run(&pods, &switched),
        Action::Switchover {
            leader: "a-1".into(),
            candidate: "a-0".into()
        }
    );
    // A user switched over to a replica that was already recreated: nothing left but the rest.
    let pods = [pod("a-0", true), pod("a-1", false), pod("a-2", false)];
    let to_a1 = cluster(vec![
        streaming("a-0", 0),
        leader("a-1"),
        streaming("a-2", 0),
    ]);
    assert_eq!(run(&pods, &to_a1), recreate("a-0"));
}

#[test]
fn a_broken_flagged_replica_goes_first_but_a_broken_unflagged_one_blocks() {
    let pods = [pod("a-0", true), pod("a-1", true), pod("a-2", true)];
    let broken = cluster(vec![
        leader("a-0"),
        streaming("a-1", 0),
        member("a-2", "replica", "start failed", None),
    ]);
    assert_eq!(run(&pods, &broken), recreate("a-2"));
    let pods = [pod("a-0", true), pod("a-1", true), pod("a-2", false)];
    waits(&run(&pods, &broken), "replica a-2 is start failed");
}

#[test]
fn no_leader_paused_or_unreadable_patroni_waits() {
    let pods = [pod("a-0", true), pod("a-1", true)];
    waits(
        &run(
            &pods,
            &cluster(vec![streaming("a-0", 0), streaming("a-1", 0)]),
        ),
        "no member holds",
    );
    let mut paused = cluster(vec![leader("a-0"), streaming("a-1", 0)]);
    paused.pause = true;
    waits(&run(&pods, &paused), "paused");
    let action = next_action(&Input {
        instances: 2,
        pods: &pods,
        patroni: Err("connection refused"),
        max_lag: 32 * MIB,
        synchronous_mode: false,
        waiting_for: Duration::ZERO,
        timeout: Duration::from_secs(600),
    });
    waits(&action, "connection refused");
    let mut unready = pods.clone();
    unready[0].ready = false;
    waits(
        &run(&unready, &cluster(vec![leader("a-0"), streaming("a-1", 0)])),
        "leader a-0 is not running and ready",
    );
}

#[test]
fn an_unknown_lag_is_not_healthy_and_never_a_candidate() {
    let pods = [pod("a-0", true), pod("a-1", false)];
    let unknown = cluster(vec![
        leader("a-0"),
        member("a-1", "replica", "streaming", None),
    ]);
    waits(&run(&pods, &unknown), "lag is unknown");
    let a1 = streaming("a-1", 0);
    let no_lag = member("a-2", "replica", "streaming", None);
    assert_eq!(
        candidate(&[&no_lag, &a1], false, 32 * MIB).map(|m| m.name.as_str()),
        Some("a-1")
    );
}
