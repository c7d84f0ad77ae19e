//! Where things are: the repository, `.local/`, the kubeconfig and the Go-built tools.
//!
//! Tool locations come from `scripts/lib.sh` (the single place that pins versions), read once.

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

/// Reads the tool paths from `scripts/lib.sh` once.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let lib = script("lib.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1" && printf '%s\n%s\n' "$KUBECTL" "$HELM""#)
            .arg("bash")
            .arg(&lib)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash to read {}: {e}", lib.display()));
        assert!(
            out.status.success(),
            "sourcing {} failed: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let kubectl = PathBuf::from(lines.next().unwrap_or_default());
        let helm = PathBuf::from(lines.next().unwrap_or_default());
        Tools { kubectl, helm }
    })
}
