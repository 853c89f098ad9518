//! `deploy/`: every kustomize overlay renders with `kubectl kustomize` and passes
//! `kubernetes-validate --strict` (no unknown fields, the Kubernetes 1.33 schemas), holds the
//! objects it is meant to, and the CRDs in the base are the binary's own (`whizard crds`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// `kubectl kustomize` of an overlay, as (kind, namespace/name) pairs and the raw YAML.
fn kustomize(overlay: &str) -> (Vec<(String, String)>, String) {
    let dir = root().join("deploy/overlays").join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl (Debian kubernetes-client) is installed by scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let objects = serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .map(|v| {
            let meta = &v["metadata"];
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}/{}",
                    meta["namespace"].as_str().unwrap_or_default(),
                    meta["name"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect();
    (objects, yaml)
}

fn validate(overlay: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{overlay}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.33.0", "--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (PyPI) is installed by scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "kubernetes-validate --strict refused overlay {overlay}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has(objects: &[(String, String)], kind: &str, name: &str) -> bool {
    objects.iter().any(|(k, n)| k == kind && n == name)
}

#[test]
fn every_overlay_renders_and_passes_strict_validation() {
    let (gateway, yaml) = kustomize("gateway");
    validate("gateway", &yaml);
    for (kind, name) in [
        ("Secret", "monitoring/whizard-gateway"),
        ("Deployment", "monitoring/whizard-gateway"),
        ("Service", "monitoring/whizard-gateway"),
        ("Service", "monitoring/whizard-gateway-peers"),
        ("PodDisruptionBudget", "monitoring/whizard-gateway"),
    ] {
        assert!(
            has(&gateway, kind, name),
            "gateway overlay lacks {kind} {name}"
        );
    }
    assert!(
        !gateway.iter().any(|(k, _)| k == "CustomResourceDefinition"),
        "the gateway alone needs no CRDs"
    );

    let (reconciler, yaml) = kustomize("reconciler");
    validate("reconciler", &yaml);
    for (kind, name) in [
        ("Namespace", "/whizard-system"),
        ("ServiceAccount", "whizard-system/whizard-reconciler"),
        ("ClusterRole", "/whizard-reconciler"),
        ("Deployment", "whizard-system/whizard-reconciler"),
        ("CustomResourceDefinition", "/tenants.monitoring.whizard.io"),
        (
            "CustomResourceDefinition",
            "/services.monitoring.whizard.io",
        ),
    ] {
        assert!(
            has(&reconciler, kind, name),
            "reconciler overlay lacks {kind} {name}"
        );
    }

    let (both, yaml) = kustomize("gateway-and-reconciler");
    validate("gateway-and-reconciler", &yaml);
    let mut expected: Vec<_> = gateway.iter().chain(&reconciler).cloned().collect();
    let mut got = both.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the combined overlay is the two bases");
}

#[test]
fn the_base_crds_are_the_binarys() {
    let file = root().join("deploy/base/reconciler/crds.yaml");
    let committed = std::fs::read_to_string(&file).unwrap();
    assert!(
        committed == whizard::reconciler::crds_yaml(),
        "{} differs from `whizard crds`: regenerate it with \
         `cargo run -q -- crds > deploy/base/reconciler/crds.yaml`",
        file.display()
    );
}
