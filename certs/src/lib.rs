//! A private CA and a serving certificate for the admission webhook.
//!
//! The API server verifies the webhook against the `caBundle` of its webhook configuration, so the
//! CA never needs to be trusted by anything else. cert-manager's CA injector is the alternative
//! for clusters that run it (see the README).

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// What to issue.
#[derive(Clone, Debug)]
pub struct Request {
    /// Name of the webhook Service.
    pub service: String,
    /// Namespace of the webhook Service.
    pub namespace: String,
    /// Extra DNS names.
    pub dns_names: Vec<String>,
    /// IP addresses (127.0.0.1 for a webhook registered by URL on this machine).
    pub ip_addresses: Vec<IpAddr>,
    /// Validity in days.
    pub days: i64,
}

/// PEM-encoded results.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The CA certificate (goes into caBundle).
    pub ca_cert: String,
    /// The CA key (keep it, or throw it away and re-issue everything later).
    pub ca_key: String,
    /// The serving certificate.
    pub tls_cert: String,
    /// The serving key.
    pub tls_key: String,
}

impl Issued {
    /// The `caBundle` value of a webhook configuration: base64 of the CA PEM.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_cert.as_bytes())
    }
}

impl Request {
    /// The Service DNS names the API server may use, plus the extras.
    pub fn all_dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        let mut names = vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        names.extend(self.dns_names.iter().cloned());
        names
    }
}

/// Creates a new CA and a serving certificate signed by it.
pub fn issue(request: &Request) -> anyhow::Result<Issued> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pg-operator webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::minutes(5);
    ca_params.not_after = now + Duration::days(request.days);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let mut params = CertificateParams::new(request.all_dns_names())?;
    params.subject_alt_names.extend(
        request
            .ip_addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip)),
    );
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{}.svc", request.service, request.namespace),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(request.days);
    let tls_key = KeyPair::generate()?;
    let tls_cert = params.signed_by(&tls_key, &issuer)?;
    Ok(Issued {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        tls_cert: tls_cert.pem(),
        tls_key: tls_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_chain_for_service_names_and_loopback() {
        let request = Request {
            service: "pg-webhook".into(),
            namespace: "postgres-operator".into(),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            days: 30,
        };
        assert!(
            request
                .all_dns_names()
                .contains(&"pg-webhook.postgres-operator.svc".to_string())
        );
        let issued = issue(&request).unwrap();
        assert!(issued.ca_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.tls_key.contains("PRIVATE KEY"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(issued.ca_bundle())
            .unwrap();
        assert_eq!(decoded, issued.ca_cert.as_bytes());
    }
}
