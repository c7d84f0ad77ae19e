//! The data volumes of running clusters: growing the claims to `spec.volume.size`
//! (`storage_resize_mode` `pvc` and `mixed`, Zalando's `syncVolumeClaims`), and never shrinking.
//!
//! The claims are made by the StatefulSet controller from the claim template, so a size change
//! reaches existing claims only through this patch of `spec.resources.requests.storage`; the
//! template itself changes by replacing the StatefulSet ([`crate::replace`]). Unlike Zalando:
//! sizes compare exactly, not truncated to whole GiB (`common::rules::volume`); a StorageClass
//! that does not allow expansion is named in a Warning Event instead of a patch the API server
//! refuses; a manifest smaller than the claims (the webhook bypassed) is a Warning Event, and
//! the claim template keeps the largest existing size ([`keep_size`]), so a new replica is never
//! given a volume too small for the data. `ebs` needs the AWS API, which this operator does not
//! call: nothing is resized (the configuration warns at load time); `mixed` grows the claims.
//!
//! The claims are read from a cache narrowed by the cluster labels and kept small ([`Slim`]): a
//! sync of a cluster whose volumes match makes no API call. A StorageClass is read only when a
//! claim must grow.

use crate::context::Context;
use crate::events::{Event, Kind};
use crate::stores::Slim;
use common::config::Config;
use common::crd::Postgresql;
use common::naming::DATA_VOLUME_NAME;
use common::quantity;
use common::rules::volume::{self, SizeChange};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Claims keep their labels, requested size and StorageClass.
impl Slim for PersistentVolumeClaim {
    fn slim(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        meta.annotations = None;
        self.spec = self.spec.take().map(|spec| PersistentVolumeClaimSpec {
            storage_class_name: spec.storage_class_name,
            resources: spec.resources.map(|r| VolumeResourceRequirements {
                requests: r.requests.map(|mut q| {
                    q.retain(|k, _| k == "storage");
                    q
                }),
                limits: None,
            }),
            ..Default::default()
        });
        self.status = None;
    }
}

/// The storage a claim requests.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

/// The data claims of a cluster (`pgdata-<cluster>-<n>`, carrying its name label), by name.
pub fn claims_of<'a>(
    claims: &'a [std::sync::Arc<PersistentVolumeClaim>],
    namespace: &str,
    cluster: &str,
    cluster_name_label: &str,
) -> Vec<&'a PersistentVolumeClaim> {
    let prefix = format!("{DATA_VOLUME_NAME}-{cluster}-");
    let mut mine: Vec<&PersistentVolumeClaim> = claims
        .iter()
        .map(|c| c.as_ref())
        .filter(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.deletion_timestamp.is_none()
                && c.name_any().starts_with(&prefix)
                && c.labels().get(cluster_name_label).map(String::as_str) == Some(cluster)
        })
        .collect();
    mine.sort_by_key(|c| c.name_any());
    mine
}

/// One claim to grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grow {
    /// The claim.
    pub claim: String,
    /// Its requested size now.
    pub from: String,
    /// Its StorageClass (`None`: none, which cannot expand).
    pub class: Option<String>,
}

/// One claim larger than the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Larger {
    /// The claim.
    pub claim: String,
    /// Its requested size.
    pub size: String,
}

/// What the claims of a cluster need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The manifest's size in canonical form (what a grown claim requests).
    pub wanted: String,
    /// Claims smaller than the manifest, to grow (none with `off` and `ebs`).
    pub grow: Vec<Grow>,
    /// Claims larger than the manifest: never shrunk, whatever the mode.
    pub larger: Vec<Larger>,
}

impl Plan {
    /// The largest claim bigger than the manifest, which the claim template keeps.
    pub fn largest(&self) -> Option<&str> {
        self.larger
            .iter()
            .map(|l| l.size.as_str())
            .max_by(|a, b| quantity::cmp(a, b).unwrap_or(std::cmp::Ordering::Equal))
    }
}

/// Whether `storage_resize_mode` grows the claims.
pub fn grows_claims(mode: &str) -> bool {
    matches!(mode, "pvc" | "mixed")
}

/// Decides for the claims of one cluster.
pub fn plan(mode: &str, wanted: &str, claims: &[&PersistentVolumeClaim]) -> Plan {
    let mut plan = Plan {
        wanted: quantity::canonical(wanted).unwrap_or_else(|| wanted.to_string()),
        ..Plan::default()
    };
    for claim in claims {
        let Some(current) = requested(claim) else {
            continue;
        };
        match volume::compare(current, wanted) {
            SizeChange::Grow if grows_claims(mode) => plan.grow.push(Grow {
                claim: claim.name_any(),
                from: current.to_string(),
                class: claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone())
                    .filter(|c| !c.is_empty()),
            }),
            SizeChange::Shrink => plan.larger.push(Larger {
                claim: claim.name_any(),
                size: current.to_string(),
            }),
            _ => {}
        }
    }
    plan
}

/// Keeps the claim template of `sts` at `size` (the largest existing claim, when the manifest
/// asks for less): a replica created later then gets a volume its data fits on. Returns whether
/// the template changed.
pub fn keep_size(sts: &mut StatefulSet, size: &str) -> bool {
    let Some(template) = sts
        .spec
        .as_mut()
        .and_then(|s| s.volume_claim_templates.as_mut())
        .and_then(|t| t.iter_mut().find(|t| t.name_any() == DATA_VOLUME_NAME))
    else {
        return false;
    };
    let requests = template
        .spec
        .get_or_insert_with(Default::default)
        .resources
        .get_or_insert_with(Default::default)
        .requests
        .get_or_insert_with(BTreeMap::new);
    let size = quantity::canonical(size).unwrap_or_else(|| size.to_string());
    if requests.get("storage").map(|q| q.0.as_str()) == Some(size.as_str()) {
        return false;
    }
    requests.insert("storage".into(), Quantity(size));
    crate::replace::stamp(sts);
    true
}

/// The Warning for claims larger than the manifest.
pub fn shrink_note(plan: &Plan) -> Option<String> {
    let largest = plan.largest()?;
    let claims: Vec<String> = plan
        .larger
        .iter()
        .map(|l| format!("{} ({})", l.claim, l.size))
        .collect();
    Some(format!(
        "{}: {}; the claims are not shrunk ({}) and new replicas get {largest}; the admission webhook refuses this change — was it bypassed?",
        volume::FIELD,
        volume::shrink_message(largest, &plan.wanted),
        claims.join(", ")
    ))
}

/// The Warning for claims whose StorageClass cannot expand.
pub fn no_expansion_note(class: Option<&str>, claims: &[&Grow], wanted: &str) -> String {
    let names: Vec<String> = claims
        .iter()
        .map(|g| format!("{} ({})", g.claim, g.from))
        .collect();
    let (which, fix) = match class {
        Some(class) => (
            format!("StorageClass {class} does not allow volume expansion"),
            format!("set allowVolumeExpansion: true on StorageClass {class}"),
        ),
        None => (
            "claims without a StorageClass cannot be expanded".to_string(),
            "only claims of a StorageClass with allowVolumeExpansion can grow".to_string(),
        ),
    };
    format!(
        "{which}: persistent volume claims {} are not grown to {} = {wanted}; {fix}",
        names.join(", "),
        volume::FIELD
    )
}

/// When a claim was last patched to a size, so that a reconcile before the cache shows the
/// patch does not patch (and announce) it again.
static GROWN: LazyLock<Mutex<HashMap<String, (String, Instant)>>> = LazyLock::new(Default::default);
/// When a StorageClass was last found unable to expand, per cluster: read again after a while,
/// so that an administrator's fix is noticed without a read on every reconcile.
static REFUSED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);
/// How long either memory holds.
const REMEMBER: Duration = Duration::from_secs(60);
/// The warning last sent per cluster and subject (a shrink, a StorageClass): the same one is not
/// repeated on every sync (each repeat would be an API write), a different one is, and one that
/// went away is forgotten.
static WARNED: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

fn first_time(key: &str, note: &str) -> bool {
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    warned.insert(key.to_string(), note.to_string()).as_deref() != Some(note)
}

fn forget(key: &str) {
    WARNED.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
}

fn recently(map: &Mutex<HashMap<String, (String, Instant)>>, key: &str, value: &str) -> bool {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(key)
        .is_some_and(|(v, at)| v == value && at.elapsed() < REMEMBER)
}

/// Why syncing the volumes failed (retried with the reconcile).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Error {
    /// What was being done.
    pub what: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Grows the claims of `pg` that are smaller than the manifest and warns about those larger.
/// Returns the plan, whose [`Plan::largest`] the claim template keeps.
pub async fn sync(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    claims: &Store<PersistentVolumeClaim>,
) -> Result<Plan, Error> {
    let namespace = pg.namespace().unwrap_or_default();
    let all = claims.state();
    let mine = claims_of(
        &all,
        &namespace,
        pg.cluster_name(),
        &config.kubernetes.cluster_name_label,
    );
    let plan = plan(
        &config.kubernetes.storage_resize_mode,
        &pg.spec.volume.size,
        &mine,
    );
    let shrink_key = format!("{namespace}/{}/shrink", pg.cluster_name());
    match shrink_note(&plan) {
        Some(note) if first_time(&shrink_key, &note) => warn(ctx, pg, "VolumeShrinkRefused", note),
        Some(_) => {}
        None => forget(&shrink_key),
    }
    let mut by_class: BTreeMap<Option<String>, Vec<&Grow>> = BTreeMap::new();
    for grow in &plan.grow {
        by_class.entry(grow.class.clone()).or_default().push(grow);
    }
    for (class, grows) in by_class {
        let refusal_key = format!(
            "{namespace}/{}/class:{}",
            pg.cluster_name(),
            class.as_deref().unwrap_or_default()
        );
        let refused_lately = REFUSED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&refusal_key)
            .is_some_and(|at| at.elapsed() < REMEMBER);
        if refused_lately {
            continue;
        }
        if !expandable(ctx, class.as_deref()).await? {
            REFUSED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(refusal_key.clone(), Instant::now());
            let note = no_expansion_note(class.as_deref(), &grows, &plan.wanted);
            if first_time(&refusal_key, &note) {
                warn(ctx, pg, "VolumeExpansionNotAllowed", note);
            }
            continue;
        }
        forget(&refusal_key);
        for grow in grows {
            grow_claim(ctx, pg, &namespace, grow, &plan.wanted).await?;
        }
    }
    Ok(plan)
}

/// Whether claims of `class` may grow: its `allowVolumeExpansion` is true.
async fn expandable(ctx: &Context, class: Option<&str>) -> Result<bool, Error> {
    let Some(class) = class else {
        return Ok(false);
    };
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    match api.get_opt(class).await {
        Ok(found) => Ok(found.and_then(|c| c.allow_volume_expansion) == Some(true)),
        Err(source) => Err(Error {
            what: format!("reading StorageClass {class}"),
            source,
        }),
    }
}

async fn grow_claim(
    ctx: &Context,
    pg: &Postgresql,
    namespace: &str,
    grow: &Grow,
    wanted: &str,
) -> Result<(), Error> {
    let key = format!("{namespace}/{}", grow.claim);
    if recently(&GROWN, &key, wanted) {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": wanted}}}});
    match api
        .patch(&grow.claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Refused by the API server (a claim it cannot resize): said once per message, and
        // tried again at the next sync.
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
            let note = format!(
                "persistent volume claim {} cannot grow from {} to {wanted} ({}): {}",
                grow.claim,
                grow.from,
                volume::FIELD,
                status.message
            );
            warn(ctx, pg, "VolumeResizeFailed", note);
            return Ok(());
        }
        Err(source) => {
            return Err(Error {
                what: format!("growing persistent volume claim {}", grow.claim),
                source,
            });
        }
    }
    ctx.metrics.wrote("persistentvolumeclaims");
    GROWN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (wanted.to_string(), Instant::now()));
    let event = Event {
        kind: Kind::Normal,
        reason: "VolumeResized".into(),
        note: format!(
            "persistent volume claim {} grows from {} to {wanted} ({})",
            grow.claim,
            grow.from,
            volume::FIELD
        ),
        action: "Resize".into(),
        related: None,
    };
    ctx.events.publish(pg.object_ref(&()), event);
    Ok(())
}

fn warn(ctx: &Context, pg: &Postgresql, reason: &str, note: String) {
    tracing::warn!(cluster = %pg.name_any(), reason, "{note}");
    let event = Event {
        kind: Kind::Warning,
        reason: reason.into(),
        note,
        action: "Resize".into(),
        related: None,
    };
    ctx.events.publish(pg.object_ref(&()), event);
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
