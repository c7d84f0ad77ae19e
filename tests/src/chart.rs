//! The operator's Helm chart as the chart tests install it: its path, the binaries its images
//! run as on the pod runner, and `helm install`/`helm upgrade` waiting for the release.

use anyhow::Result;

use crate::command::{CommandOutput, helm};
use crate::{paths, patroni, process};

/// `charts/postgres-operator` of this checkout.
pub fn operator_chart() -> String {
    paths::repo_root()
        .join("charts/postgres-operator")
        .to_string_lossy()
        .into_owned()
}

/// Fails unless a release of the chart can run here: the pod runner is up and the controller
/// and webhook binaries its pods run are built.
pub fn release_can_run() -> Result<()> {
    patroni::runner_is_up()?;
    process::workspace_binary("controller")?;
    process::workspace_binary("webhook")?;
    Ok(())
}

/// `helm <verb> <release> <chart> -n <ns> -f <values>… --wait --timeout 180s` (`verb` is
/// `install` or `upgrade`); fails with helm's output unless it succeeds.
pub async fn helm_wait(
    verb: &str,
    release: &str,
    chart: &str,
    ns: &str,
    values: &[&str],
) -> Result<CommandOutput> {
    let mut args = vec![verb, release, chart, "-n", ns];
    for file in values {
        args.extend(["-f", file]);
    }
    args.extend(["--wait", "--timeout", "180s"]);
    helm(args).await?.ok()
}
