//! Writes the CRD manifests generated from the Rust types into a directory (`make crds`).

use std::{env, fs, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let dir = PathBuf::from(env::args().nth(1).unwrap_or_else(|| "crds".to_string()));
    if let Err(err) = fs::create_dir_all(&dir) {
        eprintln!("crdgen: cannot create {}: {err}", dir.display());
        return ExitCode::FAILURE;
    }
    for (file, crd) in common::crd::generate::all() {
        let path = dir.join(file);
        if let Err(err) = fs::write(&path, common::crd::generate::to_yaml(&crd)) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
