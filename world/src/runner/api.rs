//! The runner's lookups backed by the API server: Secrets and ConfigMaps for environments and
//! volumes, TokenRequests for service-account tokens, claims' uids. The world's traits are
//! synchronous (their rules are tested without an API server), so each lookup blocks on the
//! runtime: call them only from a blocking thread (`spawn_blocking`).

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::runtime::Handle;

use crate::env::{LookupError, Objects};
use crate::volumes::{Claims, Tokens};

/// Blocking lookups through `client` on the runtime `handle`.
#[derive(Clone)]
pub struct ApiLookups {
    pub client: Client,
    pub handle: Handle,
}

fn absent_or_err<T>(result: Result<T, kube::Error>) -> Result<Option<T>, LookupError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(LookupError(e.to_string())),
    }
}

impl Objects for ApiLookups {
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        absent_or_err(self.handle.block_on(api.get(name)))
    }

    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        absent_or_err(self.handle.block_on(api.get(name)))
    }
}

/// How long the token in a process's kubeconfig is valid. Patroni reads a kubeconfig's token
/// once (only its in-cluster mode re-reads a token file, from a path that is one per machine),
/// so the token must last the pod's life: it is bound to the pod — the API server refuses it
/// once the pod is deleted — and expires after a year rather than the kubelet's hour.
pub const PROCESS_TOKEN_SECONDS: i64 = 365 * 24 * 3600;

impl ApiLookups {
    /// The ClusterIP of a Service, if it exists and has one.
    pub fn service_ip(&self, namespace: &str, name: &str) -> Result<Option<String>, LookupError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let service = absent_or_err(self.handle.block_on(api.get(name)))?;
        Ok(service
            .and_then(|s| s.spec)
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None"))
    }
}

impl Tokens for ApiLookups {
    fn token(
        &self,
        pod: &Pod,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, LookupError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let created = self
            .handle
            .block_on(api.create_token_request(service_account, &PostParams::default(), &request))
            .map_err(|e| LookupError(format!("service account {service_account}: {e}")))?;
        created
            .status
            .map(|s| s.token)
            .ok_or_else(|| LookupError("TokenRequest returned no token".into()))
    }
}

impl Claims for ApiLookups {
    fn claim_uid(&self, namespace: &str, claim: &str) -> Result<Option<String>, LookupError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        Ok(absent_or_err(self.handle.block_on(api.get(claim)))?.and_then(|c| c.metadata.uid))
    }
}

/// Where members reach the API server: the runner's own kubeconfig's server and CA.
#[derive(Debug, Clone)]
pub struct ApiServer {
    pub server: String,
    /// Base64 of the CA bundle (`certificate-authority-data`).
    pub ca_data: String,
}

impl ApiServer {
    /// From the first cluster of the kubeconfig at `path` (`.local/kubeconfig`).
    pub fn from_kubeconfig(path: &std::path::Path) -> anyhow::Result<Self> {
        let config = kube::config::Kubeconfig::read_from(path)?;
        let cluster = config
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| anyhow::anyhow!("{}: no cluster", path.display()))?;
        let server = cluster
            .server
            .ok_or_else(|| anyhow::anyhow!("{}: cluster has no server", path.display()))?;
        let ca_data = match (
            cluster.certificate_authority_data,
            cluster.certificate_authority,
        ) {
            (Some(data), _) => data,
            (None, Some(file)) => {
                use std::io::Read;
                let mut bytes = Vec::new();
                std::fs::File::open(&file)?.read_to_end(&mut bytes)?;
                base64_encode(&bytes)
            }
            (None, None) => anyhow::bail!("{}: cluster has no CA", path.display()),
        };
        Ok(Self { server, ca_data })
    }

    /// A member's kubeconfig: this server, the pod's token, the context `context` in `namespace`.
    pub fn kubeconfig(&self, token: &str, context: &str, namespace: &str) -> String {
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.server, "certificate-authority-data": self.ca_data}}],
            "users": [{"name": "pod", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "local", "user": "pod", "namespace": namespace}}],
            "current-context": context,
        });
        serde_yaml::to_string(&doc).expect("a kubeconfig serialises")
    }
}

/// Standard base64 with padding (a CA file named by path; the usual kubeconfig embeds it).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_encode;

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
