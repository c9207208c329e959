//! Finds the descriptor set of Envoy's v3 API that the `envoy-types` crate
//! ships (`src/generated/types.bin`, not exported by the crate) and copies it
//! to `OUT_DIR/envoy_descriptors.bin`, where `src/xds/proto.rs` embeds it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(manifest.join("Cargo.toml"))
        .output()
        .expect("cannot run cargo metadata");
    assert!(
        metadata.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let tree: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).expect("cargo metadata printed no JSON");
    let packages = tree["packages"]
        .as_array()
        .expect("cargo metadata lists packages");
    let envoy_types = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types is a dependency");
    let descriptors = PathBuf::from(envoy_types)
        .with_file_name("src")
        .join("generated")
        .join("types.bin");
    println!("cargo:rerun-if-changed={}", descriptors.display());
    std::fs::copy(&descriptors, out.join("envoy_descriptors.bin"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", descriptors.display()));
}
