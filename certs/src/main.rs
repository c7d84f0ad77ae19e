//! `certs`: writes ca.crt, ca.key, tls.crt and tls.key and prints the caBundle.

use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

/// Creates a CA and a webhook serving certificate, and prints the caBundle.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory for ca.crt, ca.key, tls.crt, tls.key.
    #[arg(long, default_value = ".local/certs")]
    out_dir: PathBuf,
    /// Name of the webhook Service.
    #[arg(long, default_value = "pg-operator-webhook")]
    service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "postgres-operator")]
    namespace: String,
    /// Extra DNS name (repeatable).
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    /// IP address (repeatable).
    #[arg(long = "ip", default_value = "127.0.0.1")]
    ip_addresses: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let issued = certs::issue(&certs::Request {
        service: args.service,
        namespace: args.namespace,
        dns_names: args.dns_names,
        ip_addresses: args.ip_addresses,
        days: args.days,
    })?;
    std::fs::create_dir_all(&args.out_dir)?;
    for (file, content) in [
        ("ca.crt", &issued.ca_cert),
        ("ca.key", &issued.ca_key),
        ("tls.crt", &issued.tls_cert),
        ("tls.key", &issued.tls_key),
    ] {
        let path = args.out_dir.join(file);
        std::fs::write(&path, content)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        #[cfg(unix)]
        if file.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    eprintln!(
        "wrote ca.crt, ca.key, tls.crt, tls.key to {}",
        args.out_dir.display()
    );
    println!("{}", issued.ca_bundle());
    Ok(())
}
