//! Builds the descriptor set `src/xds/proto.rs` embeds to decode what a
//! control plane sends: Envoy's v3 API as the `envoy-types` crate ships it
//! (`src/generated/types.bin`, which the crate does not export), cut down to
//! the files the message types Ringway reads need, without their comments.
//! The whole set held in a descriptor pool costs ~48 MB; this one ~6 MB.
//!
//! Which types Ringway reads is taken from its own source: every
//! `envoy.….vN.Type` name in `src/config` and `src/xds` (the `@type`s the
//! validator accepts, the resource types and the node).

use prost::Message;
use prost_types::FileDescriptorSet;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed=Cargo.lock");
    let descriptors = envoy_types_descriptors(&manifest);
    println!("cargo:rerun-if-changed={}", descriptors.display());
    let bytes = std::fs::read(&descriptors)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", descriptors.display()));
    let set = FileDescriptorSet::decode(bytes.as_slice()).expect("envoy-types' descriptor set");
    let mut roots = HashSet::new();
    for dir in ["src/config", "src/xds"] {
        println!("cargo:rerun-if-changed={dir}");
        type_names_in(&manifest.join(dir), &mut roots);
    }
    let kept = needed(&set, &roots);
    std::fs::write(out.join("envoy_descriptors.bin"), kept.encode_to_vec())
        .expect("cannot write the descriptor set");
}

/// Where `envoy-types`' descriptor set is, by `cargo metadata`.
fn envoy_types_descriptors(manifest: &Path) -> PathBuf {
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
    PathBuf::from(envoy_types)
        .with_file_name("src")
        .join("generated")
        .join("types.bin")
}

/// Adds every `envoy.<…>.v<N>.<Type>` name in the Rust files under `dir`.
fn type_names_in(dir: &Path, names: &mut HashSet<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            type_names_in(&path, names);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        for (at, _) in text.match_indices("envoy.") {
            let name: String = text[at..].chars().take_while(|&c| is_name(c)).collect();
            let parts: Vec<&str> = name.trim_end_matches('.').split('.').collect();
            let typed = parts.len() >= 3
                && parts[parts.len() - 1].starts_with(|c: char| c.is_ascii_uppercase())
                && parts[parts.len() - 2].starts_with('v');
            if typed {
                names.insert(parts.join("."));
            }
        }
    }
}

/// The files that define `roots` and everything they import, without
/// source information (comments).
fn needed(set: &FileDescriptorSet, roots: &HashSet<String>) -> FileDescriptorSet {
    let mut by_name = HashMap::new();
    let mut defining = HashMap::new();
    for (i, file) in set.file.iter().enumerate() {
        by_name.insert(file.name().to_string(), i);
        let messages = file.message_type.iter().map(|m| m.name());
        let services = file.service.iter().map(|s| s.name());
        for name in messages.chain(services) {
            defining.insert(format!("{}.{name}", file.package()), i);
        }
    }
    let mut stack: Vec<usize> = roots
        .iter()
        .map(|r| {
            *defining
                .get(r)
                .unwrap_or_else(|| panic!("{r} is named in the source but not in Envoy's API"))
        })
        .collect();
    let mut keep = HashSet::new();
    while let Some(i) = stack.pop() {
        if keep.insert(i) {
            stack.extend(set.file[i].dependency.iter().map(|d| by_name[d.as_str()]));
        }
    }
    let mut kept = FileDescriptorSet::default();
    for (i, file) in set.file.iter().enumerate() {
        if keep.contains(&i) {
            let mut file = file.clone();
            file.source_code_info = None;
            kept.file.push(file);
        }
    }
    kept
}
