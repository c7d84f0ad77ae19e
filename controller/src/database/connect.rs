//! A superuser connection to a cluster's leader.
//!
//! The leader is the pod Patroni's lock names ([`crate::members`]), dialled on its pod IP: the
//! master Service's DNS name, which Zalando uses, needs cluster DNS, and the pod IP is what the
//! Service forwards to anyway. TLS is used when the server offers it (`sslmode=prefer`), without
//! verifying the certificate — Spilo's is self-signed, as Zalando's `sslmode=require` accepts.
//! Connections are few and short: at most [`pool::PER_CLUSTER`] per cluster and [`pool::TOTAL`]
//! for the whole operator at once, so a slow or unreachable database never holds the workers of
//! the other clusters; one that is done is kept a minute for the rest of the sync ([`pool`]).

use super::pool::{self, Grant, Key, Slots};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::Notify;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

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
    /// The cluster's uid, the unit of the per-cluster limit.
    pub cluster: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("cluster", &self.cluster)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A connection and its slot: when dropped it goes back to the pool, idle, unless it was
/// [discarded](Connection::discard) or broke.
pub struct Connection {
    client: Option<tokio_postgres::Client>,
    key: Key,
    reusable: bool,
    shared: Arc<Shared>,
}

impl Connection {
    pub fn client(&self) -> &tokio_postgres::Client {
        self.client.as_ref().expect("only taken on drop")
    }

    /// Closes the connection when dropped instead of keeping it for reuse: after a failed
    /// statement its session may be inside an aborted transaction.
    pub fn discard(&mut self) {
        self.reusable = false;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let back = self
            .client
            .take()
            .filter(|c| self.reusable && !c.is_closed());
        let kept = back.is_some();
        self.shared.give_back(&self.key, back);
        if kept && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Closes it once it has been idle too long, even if nobody asks for a slot.
            let shared = self.shared.clone();
            runtime.spawn(async move {
                tokio::time::sleep(pool::IDLE + Duration::from_millis(100)).await;
                let expired = shared.lock().expire(Instant::now());
                if !expired.is_empty() {
                    drop(expired);
                    shared.notify.notify_waiters();
                }
            });
        }
    }
}

/// The slots and the waiters for one.
struct Shared {
    slots: Mutex<Slots<tokio_postgres::Client>>,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<tokio_postgres::Client>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, key: &Key, back: Option<tokio_postgres::Client>) {
        self.lock().give_back(key, back, Instant::now());
        self.notify.notify_waiters();
    }
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

/// Dials clusters within the limits of one pool.
#[derive(Clone)]
pub struct Connector {
    tls: MakeRustlsConnect,
    shared: Arc<Shared>,
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
            shared: Arc::new(Shared {
                slots: Mutex::new(Slots::new(pool::Limits::default())),
                notify: Notify::new(),
            }),
        }
    }
}

impl Connector {
    /// Connections held now (busy, being opened or idle) and the most held at once so far.
    pub fn held(&self) -> (usize, usize) {
        let slots = self.shared.lock();
        (slots.held(), slots.peak())
    }

    /// Waits for a slot of `key`: an idle connection to reuse, or room to open one.
    async fn slot(&self, key: &Key) -> Option<tokio_postgres::Client> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a slot given back meanwhile still wakes us.
            notified.as_mut().enable();
            let (grant, closed) = self.shared.lock().take(key, Instant::now());
            drop(closed);
            match grant {
                Grant::Reuse(client) if client.is_closed() => {
                    self.shared.give_back(key, None);
                }
                Grant::Reuse(client) => return Some(client),
                Grant::Open => return None,
                Grant::Wait => notified.await,
            }
        }
    }

    /// Connects to `database` on `target`, reusing an idle connection or waiting for a free
    /// slot first.
    pub async fn connect(
        &self,
        target: &Target,
        database: &str,
    ) -> Result<Connection, ConnectError> {
        let key = Key {
            cluster: target.cluster.clone(),
            host: target.host.clone(),
            port: target.port,
            database: database.to_string(),
            user: target.user.clone(),
        };
        let mut connection = Connection {
            client: self.slot(&key).await,
            key,
            reusable: true,
            shared: self.shared.clone(),
        };
        if connection.client.is_some() {
            return Ok(connection);
        }
        // From here on a failure drops `connection`, which gives the slot back.
        connection.reusable = false;
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
        let (client, io) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
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
            if let Err(error) = io.await {
                tracing::debug!(%host, %error, "database connection ended");
            }
        });
        connection.client = Some(client);
        connection.reusable = true;
        Ok(connection)
    }
}
