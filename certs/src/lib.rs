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

pub mod renew;

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
    let (ca_cert, ca_key) = new_ca(now, Duration::days(request.days))?;
    let (tls_cert, tls_key) = sign_serving(
        now,
        now + Duration::days(request.days),
        &ca_cert,
        &ca_key,
        request,
    )?;
    Ok(Issued {
        ca_cert,
        ca_key,
        tls_cert,
        tls_key,
    })
}

/// How far before `now` a certificate starts, for clocks a little behind ours: five minutes, but
/// never more than a tenth of its lifetime — renewal happens with a third of the whole validity
/// left, and a short-lived certificate must not start out due.
fn backdate(lifetime: Duration) -> Duration {
    std::cmp::min(lifetime / 10_i32, Duration::minutes(5))
}

/// A self-signed CA valid from `now` for `lifetime`: (certificate PEM, key PEM). Its name carries
/// the issue time so that two generations are told apart in a bundle and in logs.
pub(crate) fn new_ca(now: OffsetDateTime, lifetime: Duration) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("pg-operator webhook CA {}", now.unix_timestamp()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - backdate(lifetime);
    params.not_after = now + lifetime;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `request`, valid until `not_after`, signed by the CA given as PEM:
/// (certificate PEM, key PEM).
pub(crate) fn sign_serving(
    now: OffsetDateTime,
    not_after: OffsetDateTime,
    ca_cert: &str,
    ca_key: &str,
    request: &Request,
) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert, &ca_key)?;
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
    params.not_before = now - backdate(not_after - now);
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
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
