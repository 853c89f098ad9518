//! The gateway config rendered by `whizard reconciler render` loads in the gateway's own
//! config loader and admits exactly the declared tenants (plus the default tenant, where the
//! global ruler's series without a tenant label go), with one user per ruler and the Tenants'
//! `spec.access` users.

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
    let declared = [
        "big",
        "default-tenant",
        "edge",
        "team-a",
        "team-b",
        "team-c",
        "team-d",
    ];
    let tenants: Vec<&str> = cfg.tenants.keys().map(|s| s.as_str()).collect();
    assert_eq!(tenants, declared);
    assert_eq!(cfg.tenancy.label, "tenant_id");
    assert_eq!(cfg.tenancy.header, "thanos-tenant");
    let ruler = cfg.user("whizard-ruler-team-a").expect("ruler user");
    assert_eq!(ruler.tenants, vec!["team-a".to_string()]);
    assert!(ruler.access.read && ruler.access.write);
    let global = cfg
        .user("whizard-global-ruler-write")
        .expect("global ruler user");
    // The global ruler writes every tenant's series, each routed by its tenant label; series
    // without one go to the default tenant.
    let mut tenants = global.tenants.clone();
    tenants.sort();
    assert_eq!(tenants, declared);
    assert_eq!(
        global.write_routing,
        whizard::config::WriteRouting::ByLabel {
            default_tenant: Some("default-tenant".into())
        }
    );
    assert!(global.access.write && !global.access.read);
    // Tenant team-a's spec.access: agent-a writes team-a only, with the password of its
    // Secret (hashed by the reconciler).
    let agent = cfg.user("agent-a").expect("Tenant access user");
    assert_eq!(agent.tenants, vec!["team-a".to_string()]);
    assert!(agent.access.write && !agent.access.read);
    assert!(agent.certificate.is_none());
    let hash = agent.password_hash.as_ref().expect("password hash");
    assert!(whizard::auth::password::verify(hash, b"change-me-agent-a"));
    assert!(!whizard::auth::password::verify(hash, b"change-me"));
    assert!(!text.contains("change-me-agent-a"), "no plaintext password");
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

/// A Gateway with `webConfig` (TLS with a client CA, one basic-auth user from a Secret): the
/// rendered config loads, listens with HTTPS on the gateway port, and admits the user to every
/// tenant; the pod mounts the TLS Secrets and probes the plain metrics listener; rulers reach
/// the gateway over HTTPS.
#[test]
fn gateway_web_config_renders_https_and_users() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reconciler");
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("09-gateway-web.yaml"),
        r#"apiVersion: monitoring.whizard.io/v1alpha1
kind: Gateway
metadata:
  name: central
  namespace: whizard
  labels: {monitoring.whizard.io/service: whizard.central}
spec:
  webConfig:
    httpServerTLSConfig:
      certSecret: {name: gateway-tls, key: tls.crt}
      keySecret: {name: gateway-tls, key: tls.key}
      clientCASecret: {name: clients-ca, key: ca.crt}
    basicAuthUsers:
      - username: {name: gateway-users, key: ops-user}
        password: {name: gateway-users, key: ops-hash}
---
apiVersion: v1
kind: Secret
metadata: {name: gateway-users, namespace: whizard}
stringData:
  ops-user: ops
  ops-hash: $2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq
"#,
    )
    .unwrap();
    let out = whizard::reconciler::render_dir_at(dir.path(), 0).expect("render");
    let objs: Vec<Value> = serde_norway::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name}"))
    };
    let text = find("Secret", "gateway-central-config")["stringData"]["gateway.yaml"]
        .as_str()
        .unwrap();
    let raw: Value = serde_norway::from_str(text).unwrap();
    assert_eq!(raw["listen"]["https"], "0.0.0.0:9090");
    assert!(raw["listen"].get("http").is_none());
    assert_eq!(
        raw["listen"]["tls"],
        serde_json::json!({"cert_file": "/etc/whizard/web/gateway-tls/tls.crt",
            "key_file": "/etc/whizard/web/gateway-tls/tls.key",
            "client_ca_file": "/etc/whizard/web/clients-ca/ca.crt",
            "client_auth": "optional"})
    );
    // The TLS files exist only in the pod: the loader's only complaints are about them ...
    let e = match whizard::config::Config::from_yaml(text, "gateway.yaml", Path::new(".")) {
        Ok(_) => panic!("TLS files are not here"),
        Err(e) => e.to_string(),
    };
    for line in e.lines().skip(1) {
        assert!(line.contains("cannot read /etc/whizard/web/"), "{e}");
    }
    // ... and with the listener swapped for plain HTTP the rest loads.
    let mut plain = raw.clone();
    plain["listen"] = serde_json::json!({"http": "0.0.0.0:9090"});
    let plain = serde_norway::to_string(&plain).unwrap();
    let cfg = whizard::config::Config::from_yaml(&plain, "gateway.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("rendered config rejected: {e}\n{plain}"));
    let ops = cfg.user("ops").expect("webConfig user");
    assert!(ops.access.read && ops.access.write);
    assert_eq!(ops.tenants.len(), cfg.tenants.len());

    let dep = find("Deployment", "gateway-central");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["name"], "https");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    let vols: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert!(
        vols.contains(&"gateway-tls") && vols.contains(&"clients-ca"),
        "{vols:?}"
    );
    let creds = find("Secret", "ruler-team-a-gateway-credentials");
    let rw = creds["stringData"]["remote-write.yaml"].as_str().unwrap();
    assert!(
        rw.contains("url: https://gateway-central.whizard.svc:9090/api/v1/receive"),
        "{rw}"
    );
    assert!(rw.contains("insecure_skip_verify: true"));
}

/// The gateway config Secret keeps each ruler user's hash (the same as in `gateway.yaml`) with
/// its check for reuse by the next reconcile, and no password.
#[test]
fn gateway_config_secret_keeps_hashes_not_passwords() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reconciler");
    let out = whizard::reconciler::render_dir_at(&dir, 0).expect("render");
    let objs: Vec<Value> = serde_norway::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let data = &objs
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "gateway-central-config")
        .unwrap()["stringData"];
    let cfg: Value = serde_norway::from_str(data["gateway.yaml"].as_str().unwrap()).unwrap();
    let kept: Value = serde_json::from_str(data["password-hashes.json"].as_str().unwrap()).unwrap();
    let users = cfg["users"].as_array().unwrap();
    assert_eq!(kept["users"].as_object().unwrap().len(), users.len());
    for u in users {
        let k = &kept["users"][u["name"].as_str().unwrap()];
        assert_eq!(k["hash"], u["password_hash"]);
        assert_eq!(k["check"].as_str().unwrap().len(), 64);
    }
    let text = serde_json::to_string(data).unwrap();
    for o in objs.iter().filter(|o| {
        o["kind"] == "Secret"
            && o["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-gateway-credentials")
    }) {
        for key in ["query-password", "write-password"] {
            let pw = o["stringData"][key].as_str().unwrap();
            assert!(!text.contains(pw), "{key} of {}", o["metadata"]["name"]);
        }
    }
}
