//! The images: one Dockerfile per binary, built the way the workspace builds, running as UID 1000
//! without a writable root filesystem; the chart, the manifests and `make images` name the same
//! images with the workspace version. (No container engine runs here, so the images themselves
//! are not built by the tests; the pod runner stands them in with the locally built binaries,
//! matched by these names — see `operator_pods.rs` and `chart.rs`.)

use anyhow::{Context, Result, ensure};
use e2e::paths;

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(paths::repo_root().join(path)).with_context(|| path.to_string())
}

/// `key = "value"` from the workspace Cargo.toml.
fn workspace(key: &str) -> Result<String> {
    let toml = read("Cargo.toml")?;
    toml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(String::from)
        .with_context(|| format!("no {key} in Cargo.toml"))
}

#[test]
fn each_binary_has_a_multi_stage_non_root_dockerfile() -> Result<()> {
    let rust = workspace("rust-version")?;
    for bin in ["controller", "webhook"] {
        let file = read(&format!("{bin}/Dockerfile"))?;
        let stages: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
        ensure!(
            stages.len() == 2,
            "{bin}: build and runtime stages: {stages:?}"
        );
        ensure!(
            file.contains(&format!("ARG RUST_VERSION={rust}")),
            "{bin}: the builder is the workspace's rust-version {rust}"
        );
        ensure!(
            file.contains(&format!(
                "cargo build --release --locked -p {bin} --bin {bin}"
            )),
            "{bin}: the workspace's own cargo build with the committed lock file"
        );
        ensure!(
            stages[1].contains("distroless") && stages[1].contains("nonroot"),
            "{bin}: a minimal runtime base: {}",
            stages[1]
        );
        let runtime = &file[file.rfind("FROM ").unwrap_or(0)..];
        ensure!(runtime.contains("USER 1000:1000"), "{bin}: UID 1000");
        ensure!(
            runtime.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{bin}: the binary is the entrypoint"
        );
        ensure!(
            !runtime.contains("VOLUME") && !runtime.contains("RUN "),
            "{bin}: nothing is written into the runtime image's filesystem"
        );
    }
    let ignore = read(".dockerignore")?;
    for excluded in [".local", "target"] {
        ensure!(
            ignore.lines().any(|l| l == excluded),
            ".dockerignore keeps {excluded} out of the build context"
        );
    }
    Ok(())
}

#[test]
fn chart_manifests_and_make_images_name_the_same_images() -> Result<()> {
    let version = workspace("version")?;
    let chart = read("charts/postgres-operator/Chart.yaml")?;
    ensure!(
        chart.contains(&format!("\nversion: {version}\n"))
            && chart.contains(&format!("\nappVersion: \"{version}\"\n")),
        "Chart.yaml's version and appVersion follow the workspace version {version}"
    );
    let values: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/postgres-operator/values.yaml")?)?;
    let out = std::process::Command::new(paths::repo_root().join("scripts/images.sh"))
        .arg("--print")
        .env_remove("IMAGE_REGISTRY")
        .env_remove("IMAGE_TAG")
        .output()?;
    ensure!(out.status.success(), "images.sh --print: {out:?}");
    let built = String::from_utf8(out.stdout)?;
    for (bin, image) in [
        ("controller", &values["image"]),
        ("webhook", &values["webhook"]["image"]),
    ] {
        let name = format!(
            "{}/{}",
            image["registry"].as_str().unwrap_or_default(),
            image["repository"].as_str().unwrap_or_default()
        );
        ensure!(name.ends_with(&format!("/pg-operator-{bin}")), "{name}");
        // An empty tag means the chart's appVersion, the workspace version.
        ensure!(image["tag"] == "", "{bin}: the tag follows appVersion");
        let reference = format!("{name}:{version}");
        ensure!(
            built.contains(&format!("-t {reference} ")),
            "make images builds {reference}: {built}"
        );
        let manifest = read(&format!("manifests/{bin}/{bin}.yaml"))?;
        ensure!(
            manifest.contains(&format!("image: {reference}\n")),
            "manifests/{bin} runs {reference}"
        );
    }
    Ok(())
}
