//! Command line and environment of the controller.

use std::net::SocketAddr;

/// Kubernetes operator for PostgreSQL (Zalando-compatible): the controller.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// Address of the plain-HTTP admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, env = "CONTROLLER_ADMIN_LISTEN", default_value = "0.0.0.0:8081")]
    pub admin_listen: SocketAddr,
    /// Namespace the operator runs in (defaults to the service account's namespace).
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Clusters reconciled at the same time (default: the configuration's `workers`).
    #[arg(long, env = "CONTROLLER_CONCURRENCY")]
    pub concurrency: Option<u16>,
    /// Elect a leader on a Lease so that only one replica acts.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease in the operator namespace.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "postgres-operator-leader"
    )]
    pub lease_name: String,
    /// Seconds a lease stays valid without renewal (failover time).
    #[arg(long, env = "LEADER_ELECTION_LEASE_SECONDS", default_value_t = 10)]
    pub lease_seconds: u64,
    /// This replica's identity in the election (defaults to the pod or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "ENABLE_JSON_LOGGING", default_value_t = false, action = clap::ArgAction::Set)]
    pub json_logs: bool,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    pub print_config: bool,
}
