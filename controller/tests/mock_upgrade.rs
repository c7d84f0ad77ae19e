//! The major version upgrade against a mock API server, a scripted Patroni and a recorded exec:
//! which commands run in which pod, and which labels, annotations and Events one reconcile
//! writes (see `mock_api.rs` for the harness).

mod support;

use common::config::Config;
use common::crd::Postgresql;
use controller::patroni::Status;
use controller::reconcile::reconcile;
use controller::upgrade::exec::{Output, Recorded};
use controller::upgrade::{FAILURE_ANNOTATION, MARK, SUCCESS_ANNOTATION};
use http::Method;
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::{CLUSTER, Cached, Calls, context, member, mock_api, server};

/// The running minimal cluster (version 17) whose pods carry `PGVERSION` 17, a Patroni whose
/// primary runs `server_version`, and the exec answers.
async fn run(
    pg: Postgresql,
    server_version: u32,
    answers: Vec<Output>,
) -> (Calls, Vec<(String, String, Vec<String>)>) {
    run_marked(pg, server_version, answers, false).await
}

/// As [`run`]; `marked`: the pods carry the marks of a run the controller did not see end.
async fn run_marked(
    pg: Postgresql,
    server_version: u32,
    answers: Vec<Output>,
    marked: bool,
) -> (Calls, Vec<(String, String, Vec<String>)>) {
    let config = Config::default();
    let mut cached = support::written_children(&config, &pg);
    for child in &mut cached {
        if let Cached::Pod(pod) = child {
            pod.spec = Some(
                serde_json::from_value(json!({"containers": [{"name": "postgres",
                    "env": [{"name": "PGVERSION", "value": "17"}]}]}))
                .unwrap(),
            );
            if marked {
                pod.annotations_mut()
                    .insert(MARK.into(), "2026-12-06T10:00:00Z".into());
                pod.labels_mut()
                    .insert("critical-operation".into(), "true".into());
            }
        }
    }
    let fake = support::patroni_with(vec![
        member(0, "leader", "running", None),
        member(1, "replica", "streaming", Some(0)),
    ]);
    fake.statuses.lock().unwrap().insert(
        "127.10.0.2".into(),
        Ok(Status {
            state: "running".into(),
            role: "primary".into(),
            server_version,
            pending_restart: false,
        }),
    );
    let exec = Arc::new(Recorded::default());
    *exec.answers.lock().unwrap() = answers.into_iter().map(Ok).collect();
    let (client, api) = mock_api(server(&pg));
    let mut ctx = context(client, config, cached);
    {
        let ctx = Arc::get_mut(&mut ctx).expect("a fresh context");
        ctx.patroni = Arc::new(fake);
        ctx.exec = exec.clone();
    }
    tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(pg), ctx.clone()),
    )
    .await
    .expect("the reconcile finishes")
    .expect("the reconcile succeeds");
    drop(ctx);
    let calls = exec.calls.lock().unwrap().clone();
    (api.calls().await, calls)
}

fn uid(user: &str) -> Output {
    Output {
        success: true,
        stdout: format!("{user}\n"),
        ..Default::default()
    }
}

fn notes(calls: &Calls) -> Vec<String> {
    calls
        .events
        .iter()
        .filter(|e| e.body()["reason"] == "MajorVersionUpgrade")
        .map(|e| e.body()["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The merge patches of the `postgresql`'s annotations, in order.
fn annotations(calls: &Calls) -> Vec<serde_json::Value> {
    calls
        .api
        .iter()
        .filter(|c| {
            c.method == Method::PATCH && c.path.ends_with(&format!("/postgresqls/{CLUSTER}"))
        })
        .map(|c| c.body()["metadata"]["annotations"].clone())
        .collect()
}

fn labels(calls: &Calls) -> Vec<(String, serde_json::Value)> {
    calls
        .api
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path.contains("/pods/"))
        .map(|c| {
            let pod = c.path.rsplit('/').next().unwrap_or_default().to_string();
            (
                pod,
                c.body()["metadata"]["labels"]["critical-operation"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_upgrade_runs_zalandos_script_on_the_primary_between_critical_labels() {
    let pg = support::running_cluster("mock-upgrade-ok");
    let (calls, exec) = run(
        pg,
        160004,
        vec![
            uid("101"),
            Output {
                success: true,
                stdout: "Upgrade complete\n".into(),
                ..Default::default()
            },
        ],
    )
    .await;
    let primary = format!("{CLUSTER}-0");
    assert_eq!(exec.len(), 2, "{exec:#?}");
    assert_eq!(
        exec[0],
        (
            primary.clone(),
            "postgres".into(),
            vec![
                "/bin/bash".to_string(),
                "-c".into(),
                "/usr/bin/id -u".into()
            ]
        )
    );
    assert_eq!(exec[1].0, primary);
    assert_eq!(exec[1].2, controller::upgrade::upgrade_argv(2, false));
    let labels = labels(&calls);
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels[..2].iter().all(|(_, v)| v == "true"), "{labels:?}");
    assert!(labels[2..].iter().all(|(_, v)| v.is_null()), "{labels:?}");
    let annotations = annotations(&calls);
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    assert!(
        annotations[0][SUCCESS_ANNOTATION]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let notes = notes(&calls);
    assert!(
        notes.iter().any(|n| n.starts_with(
            "Starting the upgrade from major 16 to 17 on pod acid-minimal-cluster-0 of 2 pods"
        )),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("succeeded")), "{notes:?}");
}

#[tokio::test]
async fn a_failed_script_is_annotated_with_its_last_line_and_root_goes_through_su() {
    let pg = support::running_cluster("mock-upgrade-failed");
    let failed = Output {
        success: false,
        failure: Some("command terminated with non-zero exit code: 1".into()),
        stdout: "checking\npg_upgrade --check: tables with reg* columns\n".into(),
        ..Default::default()
    };
    let (calls, exec) = run(pg, 160004, vec![uid("0"), failed]).await;
    assert_eq!(exec[1].2[..3], ["/bin/su", "postgres", "-c"]);
    let annotations = annotations(&calls);
    assert!(
        annotations[0][FAILURE_ANNOTATION].is_string(),
        "{annotations:?}"
    );
    let warnings: Vec<String> = calls
        .events
        .iter()
        .filter(|e| e.body()["type"] == "Warning" && e.body()["reason"] == "MajorVersionUpgrade")
        .map(|e| e.body()["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(
            "the cluster keeps running 16: pg_upgrade --check: tables with reg* columns"
        ),
        "{warnings:?}"
    );
    assert_eq!(
        labels(&calls).len(),
        4,
        "the labels are removed after a failure too"
    );
}

#[tokio::test]
async fn a_failure_annotation_blocks_the_next_attempt() {
    let mut pg = support::running_cluster("mock-upgrade-blocked");
    pg.annotations_mut()
        .insert(FAILURE_ANNOTATION.into(), "2026-12-06T10:00:00Z".into());
    let (calls, exec) = run(pg, 160004, Vec::new()).await;
    assert!(exec.is_empty(), "{exec:?}");
    assert!(labels(&calls).is_empty());
    let notes = notes(&calls);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("remove the annotation to try again"),
        "{notes:?}"
    );
}

#[tokio::test]
async fn the_desired_major_running_removes_a_failure_and_runs_nothing() {
    let mut pg = support::running_cluster("mock-upgrade-done");
    pg.annotations_mut()
        .insert(FAILURE_ANNOTATION.into(), "2026-12-06T10:00:00Z".into());
    let (calls, exec) = run(pg, 170002, Vec::new()).await;
    assert!(exec.is_empty(), "{exec:?}");
    assert_eq!(annotations(&calls), [json!({FAILURE_ANNOTATION: null})]);
    let pg = support::running_cluster("mock-upgrade-none");
    let (calls, exec) = run(pg, 170002, Vec::new()).await;
    assert!(exec.is_empty() && annotations(&calls).is_empty() && notes(&calls).is_empty());
}

#[tokio::test]
async fn a_run_the_controller_did_not_see_end_is_reported_from_the_running_major() {
    // Restarted while the script ran; it succeeded meanwhile.
    let pg = support::running_cluster("mock-upgrade-ended");
    let (calls, exec) = run_marked(pg, 170002, Vec::new(), true).await;
    assert!(exec.is_empty(), "{exec:?}");
    assert!(annotations(&calls)[0][SUCCESS_ANNOTATION].is_string());
    let unmarked = calls
        .api
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path.contains("/pods/"))
        .filter(|c| {
            let meta = &c.body()["metadata"];
            meta["annotations"][MARK].is_null() && meta["labels"]["critical-operation"].is_null()
        })
        .count();
    assert_eq!(unmarked, 2, "{:#?}", calls.lines());
    assert!(
        notes(&calls)
            .iter()
            .any(|n| n.contains("succeeded while the controller was not watching"))
    );

    // It failed meanwhile: Spilo rolled back, the cluster still runs 16.
    let pg = support::running_cluster("mock-upgrade-ended-failed");
    let (calls, exec) = run_marked(pg, 160004, Vec::new(), true).await;
    assert!(exec.is_empty(), "no new attempt: {exec:?}");
    assert!(annotations(&calls)[0][FAILURE_ANNOTATION].is_string());
    assert_eq!(labels(&calls).len(), 2, "the marks are removed");
    assert!(notes(&calls).iter().any(|n| n.contains("still runs 16")));
}
