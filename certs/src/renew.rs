//! When the webhook's own CA and serving certificate must be (re)made, as a pure decision.
//!
//! The webhook keeps both in one Secret and every replica runs this decision on what it reads, so
//! the rules must give the same answer everywhere and never churn: a certificate is renewed once a
//! third of its lifetime is left (a replica that missed a round still has time), a new CA is
//! issued the same way, and the CA bundle keeps the previous CA until it expires so that a serving
//! certificate signed by it — still served by a replica that has not reloaded yet — keeps working.

use crate::{Request, new_ca, sign_serving};
use std::collections::BTreeSet;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The PEM texts the webhook's Secret holds, by the key they are stored under.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// `ca.crt`: the current CA first, then older CAs that have not expired.
    pub ca_bundle: String,
    /// `ca.key`: the current CA's key.
    pub ca_key: String,
    /// `tls.crt`: the serving certificate.
    pub tls_cert: String,
    /// `tls.key`: the serving key.
    pub tls_key: String,
}

/// How long new certificates are valid.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// The CA's validity.
    pub ca: Duration,
    /// The serving certificate's validity (cut to the CA's end).
    pub serving: Duration,
}

impl Default for Lifetimes {
    /// Five years for the CA, 90 days for the serving certificate.
    fn default() -> Self {
        Self {
            ca: Duration::days(5 * 365),
            serving: Duration::days(90),
        }
    }
}

/// What to do with the Secret.
#[derive(Clone, Debug)]
pub enum Decision {
    /// What is stored is good.
    Keep,
    /// Store this instead; `why` is for the log (it never holds key material).
    Write {
        /// The new content.
        stored: Stored,
        /// What changed and why.
        why: String,
    },
}

/// A parsed certificate's facts this module needs.
struct Facts {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: Vec<u8>,
    der: Vec<u8>,
    pem: String,
}

fn pems(text: &str) -> Vec<Pem> {
    Pem::iter_from_buffer(text.as_bytes())
        .map_while(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .collect()
}

fn facts(pem: &Pem) -> Option<Facts> {
    let cert = pem.parse_x509().ok()?;
    Some(Facts {
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        spki: cert.public_key().raw.to_vec(),
        der: pem.contents.clone(),
        pem: to_pem(&pem.contents),
    })
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Whether `key_pem` is the private key of the certificate with this public key.
fn key_matches(key_pem: &str, spki: &[u8]) -> bool {
    use rcgen::PublicKeyData;
    rcgen::KeyPair::from_pem(key_pem).is_ok_and(|key| key.subject_public_key_info() == spki)
}

/// The time after which a certificate is renewed: when a third of its lifetime is left.
fn renew_after(f: &Facts) -> OffsetDateTime {
    f.not_after - (f.not_after - f.not_before) / 3
}

/// The stored CA when it can stay, else why not.
fn ca_problem(stored: &Stored, now: OffsetDateTime) -> Result<Facts, String> {
    let first = pems(&stored.ca_bundle)
        .into_iter()
        .next()
        .ok_or("no CA certificate is stored")?;
    let ca = facts(&first).ok_or("the stored CA certificate cannot be parsed")?;
    if !key_matches(&stored.ca_key, &ca.spki) {
        return Err("the stored CA key does not belong to the CA certificate".into());
    }
    if now >= renew_after(&ca) {
        return Err(format!(
            "the CA expires at {} (renewed early)",
            ca.not_after
        ));
    }
    Ok(ca)
}

/// Why the stored serving certificate cannot stay (`None`: it can).
fn serving_problem(
    stored: &Stored,
    ca: &Facts,
    request: &Request,
    now: OffsetDateTime,
) -> Option<String> {
    let Some(pem) = pems(&stored.tls_cert).into_iter().next() else {
        return Some("no serving certificate is stored".into());
    };
    let Ok(cert) = pem.parse_x509() else {
        return Some("the serving certificate cannot be parsed".into());
    };
    if !key_matches(&stored.tls_key, cert.public_key().raw) {
        return Some("the serving key does not belong to the serving certificate".into());
    }
    let Ok((_, ca_cert)) = x509_parser::parse_x509_certificate(&ca.der) else {
        return Some("the CA certificate cannot be parsed".into());
    };
    if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return Some("the serving certificate is not signed by the current CA".into());
    }
    let names = subject_names(&cert);
    let wanted = request
        .all_dns_names()
        .into_iter()
        .chain(request.ip_addresses.iter().map(ToString::to_string));
    if let Some(missing) = wanted.into_iter().find(|n| !names.contains(n)) {
        return Some(format!("the serving certificate does not name {missing}"));
    }
    let serving = Facts {
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        spki: Vec::new(),
        der: Vec::new(),
        pem: String::new(),
    };
    (now >= renew_after(&serving)).then(|| {
        format!(
            "the serving certificate expires at {} (renewed early)",
            serving.not_after
        )
    })
}

fn subject_names(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                16 => {
                    Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The bundle to publish: `current` first, then the other stored CAs that are still valid.
fn bundle(current: &Facts, previous: &str, now: OffsetDateTime) -> String {
    let mut out = current.pem.clone();
    let mut seen = vec![current.der.clone()];
    for pem in pems(previous) {
        if let Some(f) = facts(&pem)
            && f.not_after > now
            && !seen.contains(&f.der)
        {
            out.push_str(&f.pem);
            seen.push(f.der);
        }
    }
    out
}

/// Decides from what is stored (if anything) whether to write new material.
pub fn decide(
    now: OffsetDateTime,
    existing: Option<&Stored>,
    request: &Request,
    lifetimes: Lifetimes,
) -> anyhow::Result<Decision> {
    let empty = Stored::default();
    let stored = existing.unwrap_or(&empty);
    let (ca_cert, ca_key, ca, mut why) = match ca_problem(stored, now) {
        Ok(ca) => (ca.pem.clone(), stored.ca_key.clone(), ca, Vec::new()),
        Err(problem) => {
            let (cert, key) = new_ca(now, lifetimes.ca)?;
            let first = pems(&cert).into_iter().next();
            let ca = first
                .as_ref()
                .and_then(facts)
                .ok_or_else(|| anyhow::anyhow!("a new CA certificate does not parse"))?;
            (cert, key, ca, vec![format!("{problem}: new CA")])
        }
    };
    let ca_bundle = bundle(&ca, &stored.ca_bundle, now);
    let (tls_cert, tls_key) = match serving_problem(stored, &ca, request, now) {
        None if why.is_empty() => (stored.tls_cert.clone(), stored.tls_key.clone()),
        problem => {
            let serving_end = (now + lifetimes.serving).min(ca.not_after);
            why.extend(problem.map(|p| format!("{p}: new serving certificate")));
            sign_serving(now, serving_end, &ca_cert, &ca_key, request)?
        }
    };
    if ca_bundle != stored.ca_bundle && why.is_empty() {
        why.push("an expired CA left the bundle".into());
    }
    if why.is_empty() {
        return Ok(Decision::Keep);
    }
    Ok(Decision::Write {
        stored: Stored {
            ca_bundle,
            ca_key,
            tls_cert,
            tls_key,
        },
        why: why.join("; "),
    })
}
