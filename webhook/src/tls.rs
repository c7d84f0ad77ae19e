//! The serving certificate, re-read when its files change.
//!
//! Kubernetes updates a Secret volume by swapping a symlink, so the files change atomically but a
//! poll can still catch a half-written pair from other tools. The resolver keeps serving the last
//! good certificate until a new pair parses and matches, so no handshake fails during a swap.

use arc_swap::ArcSwapOption;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Serves the most recent valid certificate from a pair of PEM files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwapOption<CertifiedKey>,
    loaded_from: ArcSwapOption<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    /// Loads the pair once; fails when it cannot be read or parsed.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<Self>> {
        let this = Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwapOption::empty(),
            loaded_from: ArcSwapOption::empty(),
        });
        this.reload()?;
        Ok(this)
    }

    /// A resolver that serves nothing until [`Self::install`] is given a pair (the webhook that
    /// makes its own certificate starts so, and stays unready until then).
    pub fn empty(cert_path: &Path, key_path: &Path) -> Arc<Self> {
        Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwapOption::empty(),
            loaded_from: ArcSwapOption::empty(),
        })
    }

    /// Re-reads the files; returns whether a new certificate is now served. Errors leave the
    /// previous certificate in place.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let cert_pem = std::fs::read(&self.cert_path).map_err(|e| {
            anyhow::anyhow!("cannot read certificate {}: {e}", self.cert_path.display())
        })?;
        let key_pem = std::fs::read(&self.key_path)
            .map_err(|e| anyhow::anyhow!("cannot read key {}: {e}", self.key_path.display()))?;
        self.install(cert_pem, key_pem, &self.cert_path.display().to_string())
    }

    /// Serves this PEM pair from now on if it parses and belongs together; returns whether it
    /// differs from the one served. `origin` names where it came from in errors.
    pub fn install(
        &self,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        origin: &str,
    ) -> anyhow::Result<bool> {
        if let Some(previous) = self.loaded_from.load().as_deref()
            && previous.0 == cert_pem
            && previous.1 == key_pem
        {
            return Ok(false);
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("certificate {origin} is not valid PEM: {e}"))?;
        if chain.is_empty() {
            anyhow::bail!("certificate {origin} holds no certificate");
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            anyhow::anyhow!("the key of {origin} is not a valid PEM private key: {e}")
        })?;
        let signing_key = any_supported_type(&key)
            .map_err(|e| anyhow::anyhow!("unsupported private key for {origin}: {e}"))?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified
            .keys_match()
            .map_err(|e| anyhow::anyhow!("certificate and key do not belong together: {e}"))?;
        self.current.store(Some(Arc::new(certified)));
        self.loaded_from.store(Some(Arc::new((cert_pem, key_pem))));
        Ok(true)
    }

    /// Whether a certificate is being served.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Polls the files every `interval` until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.reload() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded")
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "keeping the previous serving certificate"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1) using `certs`.
pub fn server_config(certs: Arc<ReloadingCert>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
