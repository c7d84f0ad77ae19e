//! Command line and environment of the webhook.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the serving certificate comes from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Files, re-read when they change.
    Files,
    /// A Secret the webhook writes and renews itself.
    SelfManaged,
}

/// Admission webhook for postgresql objects (Zalando-compatible).
#[derive(clap::Parser, Debug, Clone)]
// A flag given twice takes the last value, so `extraArgs` in the chart can override a rendered one.
#[command(version, about, args_override_self = true)]
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
    /// Where the serving certificate comes from: `files` (`--tls-cert`/`--tls-key`, e.g. a Secret
    /// volume filled by cert-manager) or `self-managed` (the webhook makes and renews its own CA
    /// and certificate in `--tls-secret` and injects the CA into `--webhook-configuration`).
    #[arg(long, env = "WEBHOOK_TLS_MODE", value_enum, default_value_t = TlsMode::Files)]
    pub tls_mode: TlsMode,
    /// Self-managed: the `kubernetes.io/tls` Secret (in the operator namespace) that holds the CA
    /// and the serving certificate.
    #[arg(
        long,
        env = "WEBHOOK_TLS_SECRET",
        required_if_eq("tls_mode", "self-managed")
    )]
    pub tls_secret: Option<String>,
    /// Self-managed: the webhook's Service, named by the certificate.
    #[arg(
        long,
        env = "WEBHOOK_SERVICE_NAME",
        required_if_eq("tls_mode", "self-managed")
    )]
    pub service_name: Option<String>,
    /// Self-managed: the Mutating- and ValidatingWebhookConfiguration that get the CA.
    #[arg(
        long,
        env = "WEBHOOK_CONFIGURATION_NAME",
        required_if_eq("tls_mode", "self-managed")
    )]
    pub webhook_configuration: Option<String>,
    /// Self-managed: validity of a new CA, in seconds (renewed with a third left).
    #[arg(long, env = "WEBHOOK_TLS_CA_VALIDITY_SECONDS", default_value_t = 5 * 365 * 86_400)]
    pub tls_ca_validity_seconds: u64,
    /// Self-managed: validity of a new serving certificate, in seconds (renewed with a third left).
    #[arg(long, env = "WEBHOOK_TLS_CERT_VALIDITY_SECONDS", default_value_t = 90 * 86_400)]
    pub tls_cert_validity_seconds: u64,
    /// Self-managed: seconds between checks of the Secret when nothing changes.
    #[arg(long, env = "WEBHOOK_TLS_CHECK_SECONDS", default_value_t = 3600)]
    pub tls_check_seconds: u64,
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
