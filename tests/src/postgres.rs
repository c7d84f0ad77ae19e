//! Real PostgreSQL servers on loopback addresses: the stand-in for the database inside a
//! Spilo pod. Backed by `scripts/pg-instance.sh` (installs PostgreSQL from Debian packages
//! when missing, runs the server as the `postgres` user).

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::paths;

/// A running PostgreSQL server; stopped (and its data removed) on drop.
pub struct PgInstance {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Password of the superuser `postgres`.
    pub password: String,
    pub dir: PathBuf,
}

impl PgInstance {
    /// Starts a server listening on `ip:port` (inside 127.0.0.0/8) whose superuser `postgres`
    /// has `password`. `port` 0 picks a free port.
    pub async fn start(ip: Ipv4Addr, port: u16, password: &str) -> Result<Self> {
        ensure!(
            ip.is_loopback(),
            "PostgreSQL must listen on 127.0.0.0/8, not {ip}"
        );
        let port = if port == 0 { free_port(ip)? } else { port };
        let dir = paths::local_dir()
            .join("postgres")
            .join(format!("{ip}-{port}"));
        let script = paths::script("pg-instance.sh");
        let args = [
            "start".to_string(),
            dir.display().to_string(),
            ip.to_string(),
            port.to_string(),
            password.to_string(),
        ];
        let out = tokio::process::Command::new(&script)
            .args(&args)
            .output()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "starting PostgreSQL on {ip}:{port} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(PgInstance {
            ip,
            port,
            password: password.to_string(),
            dir,
        })
    }

    /// A libpq/tokio-postgres connection string for the superuser.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres password={} dbname={dbname} connect_timeout=10",
            self.ip, self.port, self.password
        )
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let _ = Command::new(paths::script("pg-instance.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port that is free on `ip` right now.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(l.local_addr()?.port())
}
