//! Architecture invariants, checked from `cargo metadata` and the sources: who may depend on what,
//! and where status codes and authorisation may appear.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("metadata json")
}

/// (package, normal dependency names) of every workspace package.
fn packages() -> Vec<(String, Vec<String>)> {
    metadata()["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_owned())
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

fn only(dependency: &str, allowed: &[&str]) {
    for (package, deps) in packages() {
        if deps.iter().any(|d| d == dependency) {
            assert!(
                allowed.contains(&package.as_str()),
                "{package} depends on {dependency}; only {allowed:?} may"
            );
        }
    }
}

#[test]
fn dependency_boundaries() {
    // The storage crates: the two backends and the code they share (the group-commit writer is
    // generic over their connections).
    only("sqlx", &["scaivault-store", "scaivault-store-sqlite", "scaivault-store-postgres"]);
    only("axum", &["scaivault-server"]);
    only("ring", &["scaivault-crypto"]);
    let (_, domain) = packages().into_iter().find(|(p, _)| p == "scaivault-domain").expect("domain crate");
    for forbidden in ["tokio", "async-trait", "sqlx", "axum", "reqwest", "hyper", "ring"] {
        assert!(!domain.iter().any(|d| d == forbidden), "scaivault-domain must not depend on {forbidden}");
    }
}

fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn status_codes_live_only_in_the_server_and_handlers_never_authorise() {
    let crates = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates).expect("crates").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        for file in rust_sources(&entry.path().join("src")) {
            let text = std::fs::read_to_string(&file).expect("source");
            // The client reads our answers' status codes, the federation adapters those of the
            // stores they front; only the server may decide ours.
            if name == "scaivault-client" || name == "scaivault-federation" {
                continue;
            }
            if name != "scaivault-server" {
                assert!(!text.contains("StatusCode"), "{} mentions HTTP status codes", file.display());
            } else {
                for needle in ["scopes_allow", ".authorize(", "Scope::"] {
                    assert!(!text.contains(needle), "{} decides access itself ({needle})", file.display());
                }
            }
        }
    }
}
