//! Running the operator's own binaries in tests: locating them, free loopback ports, a tiny HTTP
//! GET for their admin endpoints, and today's date as the delete annotation wants it.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// A binary of this workspace, built next to the running test (`cargo build` puts both in
/// `target/<profile>/`; the test itself lives in `target/<profile>/deps/`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("no target directory")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build -p {name}` (make e2e does)",
            path.display()
        );
    }
    Ok(path)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port works")
}

/// `GET path` on 127.0.0.1:`port`: the status and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// Today in UTC as `YYYY-MM-DD`, as the delete annotation wants it (the rules' own clock).
pub fn today_utc() -> String {
    common::rules::delete_protection::today_utc()
}

#[cfg(test)]
mod tests {
    #[test]
    fn today_has_the_right_shape() {
        let today = super::today_utc();
        assert_eq!(today.len(), 10);
        assert!(today.starts_with("20"), "{today}");
    }
}
