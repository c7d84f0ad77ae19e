//! A certificate swapped the way a Secret volume does it is picked up without a failed request.

mod support;

use common::config::Config;
use e2e::tls_client::{Connection, tls_config};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::{issue, minimal, review, start, temp_dir};

#[cfg(unix)]
#[tokio::test]
async fn symlink_swap_rotates_the_certificate_without_failures() {
    use std::os::unix::fs::symlink;
    let hook = start(Config::default(), "").await;
    // Lay the files out as the kubelet does: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>.
    let dir = temp_dir("rotate");
    let first = support::issue();
    let second = issue();
    for (version, issued) in [("..v1", &first), ("..v2", &second)] {
        std::fs::create_dir_all(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("tls.crt"), &issued.tls_cert).unwrap();
        std::fs::write(dir.join(version).join("tls.key"), &issued.tls_key).unwrap();
    }
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    // Point the running server at the volume-style files.
    let certs =
        webhook::tls::ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let state = hook.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(webhook::server::serve_admission(
        listener,
        state,
        webhook::tls::server_config(certs.clone()),
        std::future::pending(),
    ));
    tokio::spawn(certs.clone().watch(Duration::from_millis(50)));

    let both_cas = format!("{}{}", first.ca_cert, second.ca_cert);
    let client = tls_config(both_cas.as_bytes()).unwrap();
    let (failures, requests, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let body = bytes::Bytes::from(review("CREATE", Some(&minimal()), None).to_string());
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, failures, requests, stop, body) = (
            client.clone(),
            failures.clone(),
            requests.clone(),
            stop.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection each time, so every request includes a handshake.
                let ok = match Connection::open(addr, client.clone(), "127.0.0.1").await {
                    Ok(mut conn) => {
                        matches!(conn.post("/validate", body.clone()).await, Ok((s, _)) if s == 200)
                    }
                    Err(_) => false,
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The kubelet's atomic swap: a new ..data link renamed over the old one.
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(
        requests.load(Ordering::Relaxed) > 20,
        "too few requests to mean anything"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );

    // A fresh client (no resumable session) that trusts only the new CA.
    let only_new = tls_config(second.ca_cert.as_bytes()).unwrap();
    let conn = Connection::open(addr, only_new, "127.0.0.1").await.unwrap();
    let second_leaf = rustls_pki_types::pem::PemObject::pem_slice_iter(second.tls_cert.as_bytes())
        .next()
        .unwrap()
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    assert_eq!(
        conn.peer_certificates[0].as_ref(),
        second_leaf.as_slice(),
        "the new certificate is served"
    );

    // A broken pair is ignored: the last good certificate stays.
    std::fs::write(dir.join("..v2").join("tls.crt"), "garbage").unwrap();
    assert!(certs.reload().is_err());
    assert!(certs.is_loaded());
    let _ = std::fs::remove_dir_all(&dir);
}
