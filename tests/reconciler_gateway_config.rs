//! The gateway config rendered by `whizard reconciler render` loads in the gateway's own
//! config loader and admits exactly the declared tenants (plus the default tenant, which the
//! global ruler writes as), with one user per ruler.

use std::path::Path;

use serde_json::Value;

fn rendered_gateway_config() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reconciler");
    // The scratch crate lives elsewhere; fall back to the main repo's examples.
    let dir = if dir.exists() {
        dir
    } else {
        Path::new("/work/main/config/reconciler").to_path_buf()
    };
    let out = whizard::reconciler::render_dir_at(&dir, 0).expect("render");
    for doc in serde_norway::Deserializer::from_str(&out) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "Secret" && v["metadata"]["name"] == "gateway-central-config" {
            return v["stringData"]["gateway.yaml"]
                .as_str()
                .unwrap()
                .to_string();
        }
    }
    panic!("no gateway config Secret rendered");
}

#[test]
fn rendered_gateway_config_loads_and_admits_declared_tenants() {
    let text = rendered_gateway_config();
    let cfg = whizard::config::Config::from_yaml(&text, "gateway.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("rendered config rejected: {e}\n{text}"));
    let tenants: Vec<&str> = cfg.tenants.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        tenants,
        vec![
            "big",
            "default-tenant",
            "edge",
            "team-a",
            "team-b",
            "team-c",
            "team-d"
        ]
    );
    assert_eq!(cfg.tenancy.label, "tenant_id");
    assert_eq!(cfg.tenancy.header, "thanos-tenant");
    let ruler = cfg.user("whizard-ruler-team-a").expect("ruler user");
    assert_eq!(ruler.tenants, vec!["team-a".to_string()]);
    assert!(ruler.access.read && ruler.access.write);
    let global = cfg
        .user("whizard-global-ruler-write")
        .expect("global ruler user");
    assert_eq!(global.tenants, vec!["default-tenant".to_string()]);
    assert!(global.access.write && !global.access.read);
    assert_eq!(
        cfg.tenants["team-a"]
            .external_labels
            .get("cluster")
            .map(|s| s.as_str()),
        Some("prod-eu-1")
    );
    // Service.spec.remoteWrites: headers, basicAuth (from the example Secret) and timeout.
    let rw = &cfg.upstreams.remote_writes[0];
    assert_eq!(rw.name, "backup");
    assert_eq!(rw.timeout, std::time::Duration::from_secs(15));
    let header = |name: &str| {
        rw.headers
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-scope-orgid").as_deref(), Some("central"));
    // base64("central:change-me")
    assert_eq!(
        header("authorization").as_deref(),
        Some("Basic Y2VudHJhbDpjaGFuZ2UtbWU=")
    );
}
