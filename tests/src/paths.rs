//! Where things are: the repository, `.local/`, the kubeconfig, the Go-built tools and this
//! checkout's ports and address ranges.
//!
//! Tool locations come from `scripts/lib.sh` (the single place that pins versions), read once.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `.local/` in the repository: logs, PIDs, state, certificates, kubeconfig.
pub fn local_dir() -> PathBuf {
    std::env::var_os("LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local"))
}

/// The admin kubeconfig written by `scripts/up.sh` (`$KUBECONFIG_LOCAL` when set).
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| local_dir().join("kubeconfig"))
}

/// `scripts/<name>`.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(name)
}

/// Paths of the Go-built tools, as pinned in `scripts/lib.sh`.
#[derive(Debug, Clone)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

/// The lines `commands` print after sourcing `scripts/lib.sh` (which holds every pinned path and
/// the checkout's network layout); panics with `failure` and bash's error when that fails.
fn from_lib_sh(commands: &str, failure: &str) -> String {
    let lib = script("lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(r#"source "$1" && {commands}"#))
        .arg("bash")
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash to read {}: {e}", lib.display()));
    assert!(
        out.status.success(),
        "{failure} ({}): {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads the tool paths from `scripts/lib.sh` once.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let text = from_lib_sh(r#"printf '%s\n%s\n' "$KUBECTL" "$HELM""#, "sourcing failed");
        let mut lines = text.lines();
        let kubectl = PathBuf::from(lines.next().unwrap_or_default());
        let helm = PathBuf::from(lines.next().unwrap_or_default());
        Tools { kubectl, helm }
    })
}

/// An IPv4 range such as `127.10.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then_some(())?;
        Some(Cidr {
            addr: addr.parse().ok()?,
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The ports and address ranges of this checkout's control plane: its slot (see `scripts/lib.sh`),
/// as `scripts/up.sh` recorded them, so that checkouts running side by side never share one.
#[derive(Debug, Clone)]
pub struct Network {
    pub slot: String,
    pub api_port: u16,
    /// Pod IPs (kwok's `--cidr`).
    pub pod_cidr: Cidr,
    /// Service ClusterIPs.
    pub service_cidr: Cidr,
    /// The first node's IP; node `i` has the address `i` above it.
    pub node_ip: Ipv4Addr,
}

/// Reads this checkout's network layout once. Call it after `cluster()`, which starts the
/// control plane (and so claims the slot) when needed.
pub fn network() -> &'static Network {
    static NETWORK: OnceLock<Network> = OnceLock::new();
    NETWORK.get_or_init(|| {
        let text = from_lib_sh(
            r#"network_load && printf '%s\n' "$PGOP_SLOT" "$API_PORT" "$POD_CIDR" "$SERVICE_CIDR" "$NODE_IP""#,
            "this checkout has no control plane network (run scripts/up.sh)",
        );
        let v: Vec<&str> = text.lines().collect();
        assert_eq!(v.len(), 5, "unexpected output of network_load: {text}");
        let cidr = |s: &str| Cidr::parse(s).unwrap_or_else(|| panic!("invalid CIDR {s:?}"));
        Network {
            slot: v[0].to_string(),
            api_port: v[1]
                .parse()
                .unwrap_or_else(|_| panic!("invalid API_PORT {:?}", v[1])),
            pod_cidr: cidr(v[2]),
            service_cidr: cidr(v[3]),
            node_ip: v[4]
                .parse()
                .unwrap_or_else(|_| panic!("invalid NODE_IP {:?}", v[4])),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("127.11.0.0/16").unwrap();
        assert!(c.contains("127.11.3.4".parse().unwrap()));
        assert!(!c.contains("127.10.255.255".parse().unwrap()));
        assert!(!c.contains("127.12.0.0".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("10.1.2.3".parse().unwrap())
        );
        assert_eq!(Cidr::parse("127.0.0.1/33"), None);
        assert_eq!(Cidr::parse("127.0.0.1"), None);
    }
}
