//! The renewal decision over time: what a fresh Secret gets, when each part is renewed, and that
//! a decision on its own output keeps it.

use certs::Request;
use certs::renew::{Decision, Lifetimes, Stored, decide};
use time::{Duration, OffsetDateTime};
use x509_parser::pem::Pem;

fn request(service: &str) -> Request {
    Request {
        service: service.into(),
        namespace: "ops".into(),
        dns_names: vec![],
        ip_addresses: vec![],
        days: 0,
    }
}

fn lifetimes() -> Lifetimes {
    Lifetimes {
        ca: Duration::days(300),
        serving: Duration::days(30),
    }
}

fn write(decision: Decision) -> (Stored, String) {
    match decision {
        Decision::Write { stored, why } => (stored, why),
        Decision::Keep => panic!("expected a write, got Keep"),
    }
}

fn keep(decision: Decision) {
    if let Decision::Write { why, .. } = decision {
        panic!("expected Keep, got a write: {why}");
    }
}

/// (not_before, not_after) of each certificate in a PEM text.
fn validity(pem: &str) -> Vec<(OffsetDateTime, OffsetDateTime)> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| {
            let p = p.unwrap();
            let cert = p.parse_x509().unwrap();
            (
                cert.validity().not_before.to_datetime(),
                cert.validity().not_after.to_datetime(),
            )
        })
        .collect()
}

fn fresh(now: OffsetDateTime) -> Stored {
    write(decide(now, None, &request("hook"), lifetimes()).unwrap()).0
}

#[test]
fn nothing_stored_gives_a_ca_and_a_serving_certificate_that_are_then_kept() {
    let now = OffsetDateTime::now_utc();
    let (stored, why) = write(decide(now, None, &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("no CA certificate"), "{why}");
    assert_eq!(validity(&stored.ca_bundle).len(), 1);
    assert!(stored.ca_key.contains("PRIVATE KEY"));
    assert!(stored.tls_key.contains("PRIVATE KEY"));
    keep(decide(now, Some(&stored), &request("hook"), lifetimes()).unwrap());
    // Still kept just before two thirds of the serving lifetime.
    keep(
        decide(
            now + Duration::days(19),
            Some(&stored),
            &request("hook"),
            lifetimes(),
        )
        .unwrap(),
    );
}

#[test]
fn the_serving_certificate_is_renewed_with_a_third_of_its_life_left_under_the_same_ca() {
    let now = OffsetDateTime::now_utc();
    let stored = fresh(now);
    let later = now + Duration::days(21);
    let (renewed, why) =
        write(decide(later, Some(&stored), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("serving certificate expires"), "{why}");
    assert_eq!(renewed.ca_bundle, stored.ca_bundle);
    assert_eq!(renewed.ca_key, stored.ca_key);
    assert_ne!(renewed.tls_cert, stored.tls_cert);
    assert_ne!(renewed.tls_key, stored.tls_key);
    let (_, end) = validity(&renewed.tls_cert)[0];
    assert!(end > later + Duration::days(29), "{end}");
    keep(decide(later, Some(&renewed), &request("hook"), lifetimes()).unwrap());
}

#[test]
fn a_new_ca_keeps_the_old_one_in_the_bundle_until_it_expires() {
    let now = OffsetDateTime::now_utc();
    let stored = fresh(now);
    let later = now + Duration::days(201);
    let (renewed, why) =
        write(decide(later, Some(&stored), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("the CA expires"), "{why}");
    assert_ne!(renewed.ca_key, stored.ca_key);
    let cas = validity(&renewed.ca_bundle);
    assert_eq!(cas.len(), 2, "new CA first, then the old one");
    assert!(cas[0].1 > cas[1].1);
    // The serving certificate moved to the new CA: a second look keeps everything.
    assert_ne!(renewed.tls_cert, stored.tls_cert);
    keep(decide(later, Some(&renewed), &request("hook"), lifetimes()).unwrap());
    // Once the old CA has expired it leaves the bundle, and nothing else changes.
    let after_old = now + Duration::days(301);
    let (pruned, why) =
        write(decide(after_old, Some(&renewed), &request("hook"), lifetimes()).unwrap());
    assert_eq!(validity(&pruned.ca_bundle).len(), 1, "{why}");
    assert_eq!(pruned.ca_key, renewed.ca_key);
}

#[test]
fn a_serving_certificate_never_outlives_its_ca() {
    let now = OffsetDateTime::now_utc();
    let short = Lifetimes {
        ca: Duration::days(10),
        serving: Duration::days(30),
    };
    let (stored, _) = write(decide(now, None, &request("hook"), short).unwrap());
    let ca_end = validity(&stored.ca_bundle)[0].1;
    let tls_end = validity(&stored.tls_cert)[0].1;
    assert!(tls_end <= ca_end, "{tls_end} after {ca_end}");
}

#[test]
fn a_renamed_service_gets_a_certificate_that_names_it() {
    let now = OffsetDateTime::now_utc();
    let stored = fresh(now);
    let (renewed, why) = write(decide(now, Some(&stored), &request("other"), lifetimes()).unwrap());
    assert!(why.contains("does not name other"), "{why}");
    assert_eq!(renewed.ca_key, stored.ca_key);
    keep(decide(now, Some(&renewed), &request("other"), lifetimes()).unwrap());
}

#[test]
fn damaged_or_mismatched_material_is_replaced() {
    let now = OffsetDateTime::now_utc();
    let stored = fresh(now);
    let other = fresh(now);

    let garbage = Stored {
        ca_bundle: "not a certificate".into(),
        ..stored.clone()
    };
    let (_, why) = write(decide(now, Some(&garbage), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("new CA"), "{why}");

    let wrong_ca_key = Stored {
        ca_key: other.ca_key.clone(),
        ..stored.clone()
    };
    let (_, why) = write(decide(now, Some(&wrong_ca_key), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("CA key does not belong"), "{why}");

    let wrong_tls_key = Stored {
        tls_key: other.tls_key.clone(),
        ..stored.clone()
    };
    let (fixed, why) =
        write(decide(now, Some(&wrong_tls_key), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("serving key does not belong"), "{why}");
    assert_eq!(fixed.ca_key, stored.ca_key);

    let foreign_serving = Stored {
        tls_cert: other.tls_cert.clone(),
        tls_key: other.tls_key.clone(),
        ..stored.clone()
    };
    let (_, why) =
        write(decide(now, Some(&foreign_serving), &request("hook"), lifetimes()).unwrap());
    assert!(why.contains("not signed by the current CA"), "{why}");
}

#[test]
fn a_short_lived_certificate_is_not_due_when_issued() {
    let now = OffsetDateTime::now_utc();
    let minute = Lifetimes {
        ca: Duration::minutes(10),
        serving: Duration::seconds(60),
    };
    let (stored, _) = write(decide(now, None, &request("hook"), minute).unwrap());
    keep(
        decide(
            now + Duration::seconds(30),
            Some(&stored),
            &request("hook"),
            minute,
        )
        .unwrap(),
    );
    let (renewed, _) = write(
        decide(
            now + Duration::seconds(45),
            Some(&stored),
            &request("hook"),
            minute,
        )
        .unwrap(),
    );
    keep(
        decide(
            now + Duration::seconds(45),
            Some(&renewed),
            &request("hook"),
            minute,
        )
        .unwrap(),
    );
}
