//! A superuser connection to a cluster's leader.
//!
//! The leader is the pod Patroni's lock names ([`crate::members`]), dialled on its pod IP: the
//! master Service's DNS name, which Zalando uses, needs cluster DNS, and the pod IP is what the
//! Service forwards to anyway. TLS is used when the server offers it (`sslmode=prefer`), without
//! verifying the certificate — Spilo's is self-signed, as Zalando's `sslmode=require` accepts.
//! Connections are few and short: one per sync of a cluster and database, at most
//! [`MAX_CONNECTIONS`] at once for the whole operator, so a slow or unreachable database never
//! holds the workers of the other clusters.

use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connections the operator holds at once, over all clusters.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection failed; never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {host} as {user}: {source}")]
    Postgres {
        host: String,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connecting to {host}: no answer within {0:?}", CONNECT_TIMEOUT)]
    Timeout { host: String },
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A connection and the permit it holds; both go when it is dropped.
pub struct Connection {
    pub client: tokio_postgres::Client,
    _permit: OwnedSemaphorePermit,
}

/// Accepts any server certificate: the connection is encrypted, not authenticated by TLS
/// (PostgreSQL's password authentication does that), as `sslmode=require` does.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Dials clusters with a shared limit.
#[derive(Clone)]
pub struct Connector {
    tls: MakeRustlsConnect,
    permits: Arc<Semaphore>,
}

impl Default for Connector {
    fn default() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth()
            })
            .expect("ring supports the default protocol versions");
        Connector {
            tls: MakeRustlsConnect::new(config),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl Connector {
    /// Connects to `database` on `target`, waiting for a free permit first.
    pub async fn connect(
        &self,
        target: &Target,
        database: &str,
    ) -> Result<Connection, ConnectError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(&target.user)
            .password(&target.password)
            .dbname(database)
            .application_name("postgres-operator")
            .ssl_mode(SslMode::Prefer)
            .connect_timeout(CONNECT_TIMEOUT);
        let connecting = config.connect(self.tls.clone());
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                host: target.host.clone(),
            })?
            .map_err(|source| ConnectError::Postgres {
                host: target.host.clone(),
                user: target.user.clone(),
                source,
            })?;
        let host = target.host.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%host, %error, "database connection ended");
            }
        });
        Ok(Connection {
            client,
            _permit: permit,
        })
    }
}
