//! Shared support for the end-to-end tests: a real local control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok, started by `scripts/up.sh`), one fresh
//! namespace per test, bounded polling, YAML apply, `kubectl`/`helm` runners and throw-away
//! PostgreSQL servers on loopback addresses.
//!
//! Every address used here is inside 127.0.0.0/8; see `README.md`, section "Testing".

pub mod apply;
pub mod chart;
pub mod cluster;
pub mod command;
pub mod crds;
pub mod events;
pub mod eventually;
pub mod namespace;
pub mod patch;
pub mod paths;
pub mod patroni;
pub mod postgres;
pub mod process;
pub mod promtext;
pub mod secrets;
pub mod status;
pub mod steady;
pub mod tls_client;
pub mod writer;

pub use apply::{apply_yaml, apply_yaml_file};
pub use cluster::{Cluster, cluster};
pub use command::{CommandOutput, helm, kubectl, kubectl_with_stdin, run};
pub use eventually::{eventually, eventually_with};
pub use namespace::TestNamespace;
pub use postgres::PgInstance;

/// Prints a note and returns from the calling test early (the test passes).
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        eprintln!("SKIPPED: {}", format!($($arg)*));
        return Ok(());
    }};
}
