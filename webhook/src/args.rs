//! Command line and environment of the webhook.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Admission webhook for postgresql objects (Zalando-compatible).
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// Address of the HTTPS admission endpoints (/mutate, /validate).
    #[arg(long, env = "WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, env = "WEBHOOK_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// PEM serving certificate (chain); re-read when it changes.
    #[arg(
        long,
        env = "WEBHOOK_TLS_CERT",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// PEM private key of the serving certificate; re-read when it changes.
    #[arg(
        long,
        env = "WEBHOOK_TLS_KEY",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Seconds between checks of the certificate files.
    #[arg(long, env = "WEBHOOK_CERT_RELOAD_SECONDS", default_value_t = 2)]
    pub cert_reload_seconds: u64,
    /// Largest admission request accepted, in bytes.
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client gets to send a whole request.
    #[arg(long, env = "WEBHOOK_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub request_timeout_seconds: u64,
    /// Namespace the operator runs in (defaults to the service account's namespace).
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "ENABLE_JSON_LOGGING", default_value_t = false)]
    pub json_logs: bool,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    pub print_config: bool,
}
