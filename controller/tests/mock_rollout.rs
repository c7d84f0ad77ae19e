//! The rolling update against a mock API server and a scripted Patroni: which calls one
//! reconcile makes when the pod template changed, when a replica is due, and when Patroni
//! refuses the switchover (see `mock_api.rs` for the harness).

mod support;

use common::config::Config;
use controller::apply::APPLIED_HASH;
use controller::patroni::fake::Fake;
use controller::patroni::{Error as PatroniError, Member};
use controller::rollout::template::FINGERPRINT;
use http::Method;
use kube::ResourceExt;
use std::sync::Arc;
use support::{CLUSTER, Cached, Calls, context, member, mock_api, server};

const FLAG: &str = "zalando-postgres-operator-rolling-update-required";

/// The running minimal cluster's children and members, its pods flagged as `flagged` says
/// (by ordinal), each with a uid.
fn cached(config: &Config, pg: &common::crd::Postgresql, flagged: &[bool]) -> Vec<Cached> {
    let mut children = support::written_children(config, pg);
    for child in &mut children {
        if let Cached::Pod(pod) = child {
            let ordinal: usize = pod.name_any().rsplit('-').next().unwrap().parse().unwrap();
            pod.metadata.uid = Some(format!("uid-{ordinal}"));
            if flagged.get(ordinal).copied().unwrap_or(false) {
                pod.annotations_mut().insert(FLAG.into(), "true".into());
            }
        }
    }
    children
}

fn patroni(members: Vec<Member>, switchover: Option<PatroniError>) -> Fake {
    let fake = support::patroni_with(members);
    *fake.write_result.lock().unwrap() = switchover;
    fake
}

async fn run(
    pg: common::crd::Postgresql,
    config: Config,
    cached: Vec<Cached>,
    fake: Fake,
) -> (Calls, Vec<String>) {
    let (client, api) = mock_api(server(&pg));
    let mut ctx = context(client, config, cached);
    let fake = Arc::new(fake);
    Arc::get_mut(&mut ctx).expect("a fresh context").patroni = fake.clone();
    let result = support::reconcile_bounded(Arc::new(pg), ctx.clone()).await;
    result.expect("the reconcile succeeds");
    drop(ctx);
    (api.calls().await, fake.calls())
}

#[tokio::test]
async fn a_changed_pod_template_flags_every_pod_before_the_statefulset_is_written() {
    let ns = "mock-roll-flag";
    let pg = support::running_cluster(ns);
    let config = Config::default();
    let mut cached = cached(&config, &pg, &[false, false]);
    // Applied from an older template: another fingerprint, another applied-hash.
    support::edit_statefulset(&mut cached, |sts| {
        let annotations = sts.annotations_mut();
        annotations.insert(FINGERPRINT.into(), "an older template".into());
        annotations.insert(APPLIED_HASH.into(), "000000000000000000000000".into());
    });
    let members = vec![
        member(0, "leader", "running", None),
        member(1, "replica", "streaming", Some(0)),
    ];
    let (calls, patroni) = run(pg, config, cached, patroni(members, None)).await;
    let lines = calls.lines();
    let flagged: Vec<usize> = (0..2)
        .map(|i| {
            let path = format!("/api/v1/namespaces/{ns}/pods/{CLUSTER}-{i}");
            lines
                .iter()
                .position(|l| *l == format!("{} {path}", Method::PATCH))
                .unwrap_or_else(|| panic!("pod {i} not flagged: {lines:#?}"))
        })
        .collect();
    let sts = lines
        .iter()
        .position(|l| l.ends_with(&format!("/statefulsets/{CLUSTER}")))
        .expect("the StatefulSet is applied");
    assert!(flagged.iter().all(|f| *f < sts), "{lines:#?}");
    for i in &flagged {
        assert_eq!(
            calls.api[*i].body()["metadata"]["annotations"][FLAG],
            "true"
        );
    }
    assert!(
        calls.sent_events().iter().any(
            |e| e.reason == "RollingUpdate" && e.note.starts_with("Performing rolling update")
        ),
        "{:#?}",
        calls.events
    );
    // The cache does not show the flags yet, but the step of the same reconcile counts both
    // pods as flagged: the replica goes first, no switchover to a pod about to be recreated.
    assert!(
        !patroni.iter().any(|c| c.contains("/switchover")),
        "{patroni:?}"
    );
    let deletes: Vec<&support::Call> = calls
        .api
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 1, "{lines:#?}");
    assert!(deletes[0].path.ends_with(&format!("/pods/{CLUSTER}-1")));
}

#[tokio::test]
async fn a_flagged_replica_of_a_healthy_cluster_is_deleted_with_its_uid_as_precondition() {
    let ns = "mock-roll-replica";
    let pg = support::running_cluster(ns);
    let config = Config::default();
    let cached = cached(&config, &pg, &[true, true]);
    let members = vec![
        member(0, "leader", "running", None),
        member(1, "replica", "streaming", Some(0)),
    ];
    let (calls, patroni) = run(pg, config, cached, patroni(members, None)).await;
    let deletes: Vec<&support::Call> = calls
        .api
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 1, "{:#?}", calls.lines());
    assert!(deletes[0].path.ends_with(&format!("/pods/{CLUSTER}-1")));
    assert_eq!(deletes[0].body()["preconditions"]["uid"], "uid-1");
    assert!(
        patroni
            .iter()
            .any(|c| c.starts_with("GET /cluster 127.10.0.2")),
        "{patroni:?}"
    );
    assert!(
        !patroni.iter().any(|c| c.contains("/switchover")),
        "{patroni:?}"
    );
}

#[tokio::test]
async fn a_refused_switchover_is_a_warning_and_the_old_master_stays() {
    let ns = "mock-roll-refused";
    let pg = support::running_cluster(ns);
    let config = Config::default();
    let cached = cached(&config, &pg, &[true, false]);
    let members = vec![
        member(0, "leader", "running", None),
        member(1, "replica", "streaming", Some(0)),
    ];
    let refused = PatroniError::Refused {
        address: "127.10.0.2".into(),
        call: "POST /switchover",
        status: 412,
        message: "candidate name does not match with sync_standby".into(),
    };
    let (calls, patroni) = run(pg, config, cached, patroni(members, Some(refused))).await;
    assert!(
        patroni
            .iter()
            .any(|c| c == &format!("POST /switchover 127.10.0.2 {CLUSTER}-0 -> {CLUSTER}-1")),
        "{patroni:?}"
    );
    assert!(
        !calls.api.iter().any(|c| c.method == Method::DELETE),
        "{:#?}",
        calls.lines()
    );
    assert!(
        calls
            .sent_events()
            .iter()
            .any(|e| e.reason == "SwitchoverFailed" && e.note.contains("status 412")),
        "{:#?}",
        calls.events
    );
}

#[tokio::test]
async fn a_changed_pod_annotation_is_patched_onto_the_running_pods_without_a_roll() {
    let ns = "mock-roll-annotations";
    let pg = support::running_cluster(ns);
    let old = Config::default();
    let cached = cached(&old, &pg, &[false, false]);
    let mut config = old.clone();
    config
        .kubernetes
        .custom_pod_annotations
        .insert("prometheus.io/scrape".into(), "true".into());
    let (calls, patroni) = run(pg, config, cached, patroni(Vec::new(), None)).await;
    let patches: Vec<&support::Call> = calls
        .api
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path.contains("/pods/"))
        .collect();
    assert_eq!(patches.len(), 2, "{:#?}", calls.lines());
    for patch in patches {
        let annotations = &patch.body()["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert!(annotations[controller::rollout::annotations::DIGEST].is_string());
        assert!(
            annotations.get(FLAG).is_none(),
            "no pod is flagged: {annotations}"
        );
    }
    assert!(
        calls
            .lines()
            .iter()
            .any(|l| l.ends_with(&format!("/statefulsets/{CLUSTER}"))),
        "the StatefulSet gets the new template"
    );
    assert!(!calls.api.iter().any(|c| c.method == Method::DELETE));
    assert!(patroni.iter().all(|c| !c.contains("/switchover")));
}
