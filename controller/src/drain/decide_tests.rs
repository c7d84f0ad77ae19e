use super::*;
use chrono::TimeZone;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(unschedulable: bool, l: &[(&str, &str)]) -> NodeState {
    NodeState {
        unschedulable,
        labels: labels(l),
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

fn pod(name: &str, node: &str, master: bool) -> PodState {
    PodState {
        name: name.into(),
        node: Some(node.into()),
        master,
        ready: true,
    }
}

/// A two- or three-member world: acid-0 (master) on n0, acid-1 on n1, acid-2 on n2; n0 is
/// cordoned.
struct World {
    pods: Vec<PodState>,
    nodes: BTreeMap<String, NodeState>,
    readiness: BTreeMap<String, String>,
    cluster: Cluster,
    instances: usize,
    synchronous_mode: bool,
    gate: Gate,
}

impl World {
    fn new(members: usize) -> World {
        let mut cluster = Cluster {
            members: vec![member("acid-0", "leader", "running", None)],
            pause: false,
        };
        let mut pods = vec![pod("acid-0", "n0", true)];
        for i in 1..members {
            cluster.members.push(member(
                &format!("acid-{i}"),
                "replica",
                "streaming",
                Some(i as u64),
            ));
            pods.push(pod(&format!("acid-{i}"), &format!("n{i}"), false));
        }
        let mut nodes = BTreeMap::new();
        nodes.insert("n0".to_string(), node(true, &[]));
        for i in 1..3 {
            nodes.insert(format!("n{i}"), node(false, &[]));
        }
        World {
            pods,
            nodes,
            readiness: BTreeMap::new(),
            cluster,
            instances: members,
            synchronous_mode: false,
            gate: Gate::Open,
        }
    }

    fn decide(&self) -> Decision {
        decide(&Input {
            master: "acid-0",
            instances: self.instances,
            pods: &self.pods,
            nodes: &self.nodes,
            readiness: &self.readiness,
            patroni: Ok(&self.cluster),
            max_lag: 1 << 20,
            synchronous_mode: self.synchronous_mode,
            gate: self.gate,
        })
    }
}

fn now_to(candidate: &str, node: &str) -> Decision {
    Decision::Switchover {
        leader: "acid-0".into(),
        candidate: candidate.into(),
        candidate_node: node.into(),
        at: None,
        passed_over: None,
    }
}

#[test]
fn a_node_is_ready_when_schedulable_labelled_ready_or_a_master_node() {
    let none = BTreeMap::new();
    let ready = labels(&[("lifecycle", "ready")]);
    assert!(is_ready(&node(false, &[]), &none));
    assert!(!is_ready(&node(true, &[]), &none));
    // Cordoned but carrying every readiness label: still ready (Zalando's OR).
    assert!(is_ready(&node(true, &[("lifecycle", "ready")]), &ready));
    assert!(!is_ready(&node(true, &[("lifecycle", "gone")]), &ready));
    // Without readiness labels configured, a cordoned node is not ready even if labelled.
    assert!(!is_ready(&node(true, &[("lifecycle", "ready")]), &none));
    // Control-plane nodes labelled master=true never count as drained.
    assert!(is_ready(&node(true, &[("master", "true")]), &none));
    // Schedulable without the readiness label is ready, though end of life.
    assert!(is_ready(&node(false, &[]), &ready));
    assert!(is_end_of_life(&node(false, &[]), &ready));
    assert!(is_end_of_life(
        &node(true, &[("lifecycle", "ready")]),
        &ready
    ));
    assert!(!is_end_of_life(
        &node(false, &[("lifecycle", "ready")]),
        &ready
    ));
}

#[test]
fn only_a_turn_to_not_ready_or_a_not_ready_node_first_seen_triggers() {
    let none = BTreeMap::new();
    let (up, cordoned) = (node(false, &[]), node(true, &[]));
    assert!(triggers(Some(&up), &cordoned, &none));
    assert!(triggers(None, &cordoned, &none), "not ready at start");
    assert!(!triggers(None, &up, &none));
    assert!(!triggers(Some(&cordoned), &cordoned, &none), "no repeat");
    assert!(!triggers(Some(&cordoned), &up, &none), "uncordoned");
    // Losing the readiness label while cordoned triggers; while schedulable it does not.
    let ready = labels(&[("lifecycle", "ready")]);
    let labelled = node(true, &[("lifecycle", "ready")]);
    assert!(triggers(Some(&labelled), &cordoned, &ready));
    assert!(!triggers(
        Some(&node(false, &[("lifecycle", "ready")])),
        &up,
        &ready
    ));
}

#[test]
fn the_master_moves_to_the_replica_on_a_ready_node_now_inside_a_window() {
    assert_eq!(World::new(2).decide(), now_to("acid-1", "n1"));
    // The least lagging replica of three.
    let mut w = World::new(3);
    w.cluster.members[1].lag = Some(500);
    assert_eq!(w.decide(), now_to("acid-2", "n2"));
}

#[test]
fn outside_a_window_the_switchover_is_scheduled_for_the_next_window_start() {
    let mut w = World::new(2);
    let next = Utc.with_ymd_and_hms(2024, 5, 7, 1, 0, 0).unwrap();
    w.gate = Gate::Closed { next };
    assert_eq!(
        w.decide(),
        Decision::Switchover {
            leader: "acid-0".into(),
            candidate: "acid-1".into(),
            candidate_node: "n1".into(),
            at: Some(next),
            passed_over: None,
        }
    );
}

#[test]
fn a_single_member_means_downtime_and_no_switchover() {
    let w = World::new(1);
    assert_eq!(w.decide(), Decision::Downtime);
}

#[test]
fn nothing_to_do_once_the_node_is_ready_again_or_the_pod_no_longer_leads() {
    let mut w = World::new(2);
    w.nodes.insert("n0".into(), node(false, &[]));
    assert_eq!(
        w.decide(),
        Decision::Done("node n0 is schedulable and ready again".into())
    );
    let mut w = World::new(2);
    w.pods[0].master = false;
    assert_eq!(
        w.decide(),
        Decision::Done("acid-0 is no longer the master".into())
    );
    let mut w = World::new(2);
    w.pods.remove(0);
    assert!(matches!(w.decide(), Decision::Done(_)));
    // A node deleted meanwhile: its pods are gone with it.
    let mut w = World::new(2);
    w.nodes.remove("n0");
    assert_eq!(w.decide(), Decision::Done("node n0 is gone".into()));
}

#[test]
fn a_schedulable_node_without_the_readiness_label_still_moves_its_master() {
    // Once triggered (the node was cordoned and lost its label), uncordoning it without giving
    // the label back does not stop the move: Zalando's end-of-life test.
    let mut w = World::new(2);
    w.readiness = labels(&[("lifecycle", "ready")]);
    w.nodes.insert("n0".into(), node(false, &[]));
    w.nodes
        .insert("n1".into(), node(false, &[("lifecycle", "ready")]));
    assert_eq!(w.decide(), now_to("acid-1", "n1"));
    // A replica on a node without the label is no candidate.
    w.nodes.insert("n1".into(), node(false, &[]));
    assert!(matches!(w.decide(), Decision::Wait(_)));
}

#[test]
fn the_best_replica_on_a_drained_node_is_passed_over_for_another_healthy_one() {
    let mut w = World::new(3);
    w.nodes.insert("n1".into(), node(true, &[]));
    assert_eq!(
        w.decide(),
        Decision::Switchover {
            leader: "acid-0".into(),
            candidate: "acid-2".into(),
            candidate_node: "n2".into(),
            at: None,
            passed_over: Some("acid-1 is on node n1, which is being drained too".into()),
        }
    );
}

#[test]
fn when_the_only_candidate_is_on_a_drained_node_the_move_waits() {
    let mut w = World::new(2);
    w.nodes.insert("n1".into(), node(true, &[]));
    assert_eq!(
        w.decide(),
        Decision::Wait(
            "the only replica that can take over, acid-1 is on node n1, which is being drained \
             too; waiting until it runs elsewhere"
                .into()
        )
    );
    // Both pods on the cordoned node.
    let mut w = World::new(2);
    w.pods[1].node = Some("n0".into());
    assert!(matches!(w.decide(), Decision::Wait(why) if why.contains("acid-1 is on node n0")));
}

#[test]
fn no_healthy_candidate_waits_and_says_why() {
    let mut w = World::new(3);
    w.cluster.members[1].state = "starting".into();
    w.cluster.members[2].lag = Some(10 << 20);
    assert_eq!(
        w.decide(),
        Decision::Wait(
            "no replica can take over: acid-1 is starting, acid-2 lags 10485760 bytes (allowed 1048576)"
                .into()
        )
    );
    let mut w = World::new(2);
    w.pods[1].ready = false;
    assert_eq!(
        w.decide(),
        Decision::Wait("no replica can take over: acid-1 is not ready".into())
    );
    // The replica's pod is gone (evicted by the drain, not recreated yet).
    let mut w = World::new(2);
    w.pods.pop();
    w.cluster.members.pop();
    assert_eq!(
        w.decide(),
        Decision::Wait("no replica can take over".into())
    );
}

#[test]
fn synchronous_mode_promotes_only_a_synchronous_standby_on_a_ready_node() {
    let mut w = World::new(3);
    w.synchronous_mode = true;
    w.cluster.members[2].role = "sync_standby".into();
    assert_eq!(w.decide(), now_to("acid-2", "n2"));
    w.nodes.insert("n2".into(), node(true, &[]));
    assert!(matches!(w.decide(), Decision::Wait(why) if why.contains("acid-2 is on node n2")));
    w.cluster.members[2].role = "replica".into();
    assert_eq!(
        w.decide(),
        Decision::Wait("synchronous mode is on and no synchronous standby can take over".into())
    );
}

#[test]
fn an_unknown_or_paused_or_moved_patroni_waits() {
    let w = World::new(2);
    let input = |patroni| Input {
        master: "acid-0",
        instances: 2,
        pods: &w.pods,
        nodes: &w.nodes,
        readiness: &w.readiness,
        patroni,
        max_lag: 1 << 20,
        synchronous_mode: false,
        gate: Gate::Open,
    };
    assert!(
        matches!(decide(&input(Err("refused"))), Decision::Wait(why) if why.ends_with("refused"))
    );
    let mut paused = w.cluster.clone();
    paused.pause = true;
    assert_eq!(
        decide(&input(Ok(&paused))),
        Decision::Wait("Patroni is paused (maintenance mode)".into())
    );
    let mut moved = w.cluster.clone();
    moved.members[0].role = "replica".into();
    moved.members[1].role = "leader".into();
    assert!(
        matches!(decide(&input(Ok(&moved))), Decision::Wait(why) if why.starts_with("Patroni's leader is acid-1"))
    );
}
