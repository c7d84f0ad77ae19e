//! Leader election on a `coordination.k8s.io/v1` Lease, so only one replica acts at a time.
//!
//! The holder renews every `renew` seconds; another replica takes over once the lease has not
//! been renewed for `duration` seconds. Every change goes through `replace` with the lease's
//! resourceVersion, so two candidates can never both win. A leader that cannot renew in time
//! stops acting before its lease can expire.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

/// Runs forever, keeping `leading` true exactly while this replica holds the lease.
pub async fn run(client: Client, election: Election, leading: Arc<AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut last_renewal = Instant::now() - election.duration;
    loop {
        let attempt = tokio::time::timeout(election.renew, try_acquire(&api, &election)).await;
        match attempt {
            Ok(Ok(true)) => {
                if !leading.swap(true, Ordering::AcqRel) {
                    tracing::info!(identity = %election.identity, "became the leader");
                }
                last_renewal = Instant::now();
            }
            Ok(Ok(false)) => {
                if leading.swap(false, Ordering::AcqRel) {
                    tracing::warn!("lost the lease to another replica");
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "lease update failed"),
            Err(_) => tracing::warn!("lease update timed out"),
        }
        // Step down well before the lease could be taken over.
        if leading.load(Ordering::Acquire)
            && last_renewal.elapsed() > election.duration.mul_f64(0.8)
        {
            leading.store(false, Ordering::Release);
            tracing::warn!("could not renew the lease in time; stepping down");
        }
        tokio::time::sleep(election.renew).await;
    }
}

async fn try_acquire(api: &Api<Lease>, election: &Election) -> kube::Result<bool> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(election.identity.clone()),
        lease_duration_seconds: Some(election.duration.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now.clone())),
        renew_time: Some(now.clone()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                ..Default::default()
            },
            spec: Some(spec(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let expired = current.renew_time.as_ref().is_none_or(|renewed| {
        let valid_for = k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
            current.lease_duration_seconds.unwrap_or(15),
        ));
        renewed.0 + valid_for < now.0
    });
    let transitions = current.lease_transitions.unwrap_or(0);
    lease.spec = Some(if holder == election.identity {
        spec(transitions, current.acquire_time.clone())
    } else if expired || holder.is_empty() {
        spec(transitions + 1, None)
    } else {
        return Ok(false);
    });
    match api
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}
