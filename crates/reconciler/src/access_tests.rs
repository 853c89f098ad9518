//! Issue #30, "per-tenant access in CRs": `Tenant.spec.access` rendered into the gateway
//! config (users and OIDC `group_tenants`), hashes of given passwords kept and reused, bad
//! entries confined to their Tenant.

use std::path::{Path, PathBuf};

use kube::api::ObjectMeta;
use serde_json::{json, Value};

use super::crd::{labels as L, *};
use super::credentials;
use super::model::Inputs;
use super::planner::{self, Plan};
use super::render;

const BCRYPT: &str = "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq";

fn examples() -> PathBuf {
    super::tests::examples()
}

fn inputs() -> (Service, Inputs) {
    let (services, mut inputs) = render::read_dir(&examples()).unwrap();
    inputs.service = services[0].clone();
    (services[0].clone(), inputs)
}

fn tenant(name: &str, access: Value) -> Tenant {
    Tenant {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [(L::SERVICE.to_string(), "whizard.central".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: TenantSpec {
            access: serde_json::from_value(access).unwrap(),
            ..Default::default()
        },
        status: None,
    }
}

/// The Gateway `central` of the example Service, with `spec` as given.
fn central_gateway(spec: Value) -> Gateway {
    Gateway {
        metadata: ObjectMeta {
            name: Some("central".into()),
            namespace: Some("whizard".into()),
            labels: Some(
                [(L::SERVICE.to_string(), "whizard.central".to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: serde_json::from_value(spec).unwrap(),
    }
}

fn secret(inputs: &mut Inputs, name: &str, key: &str, value: &str) {
    inputs
        .secrets
        .entry(name.into())
        .or_default()
        .insert(key.into(), value.into());
}

fn gateway_yaml(plan: &Plan, svc: &Service) -> String {
    let objs = render::render_plan(plan, svc);
    objs.iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "gateway-central-config")
        .unwrap()["stringData"]["gateway.yaml"]
        .as_str()
        .unwrap()
        .to_string()
}

fn load(text: &str) -> whizard_core::config::Config {
    whizard_core::config::Config::from_yaml(text, "gateway.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("rendered config rejected: {e}\n{text}"))
}

fn ready(plan: &Plan, cr: &str) -> (String, String, String) {
    let c = &plan.tenant_status[cr].conditions[0];
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn verifies(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    let h = argon2::password_hash::phc::PasswordHash::new(hash).unwrap();
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &h)
        .is_ok()
}

/// Users with a password, a kept hash, a certificate, and an OIDC group render into a config
/// the gateway loads, each user limited to its tenant and access.
#[test]
fn access_entries_render_into_a_valid_gateway_config() {
    let (svc, mut inputs) = inputs();
    inputs.tenants.push(tenant(
        "ops",
        json!([
            {"name": "ops-reader", "access": ["read"],
             "passwordHashSecret": {"name": "ops-users", "key": "reader-hash"}},
            {"name": "ops-agent", "access": ["write", "read", "write"],
             "certificate": {"field": "dns", "value": "Agent.Ops.example"}},
            {"oidcGroup": "ops-team"}
        ]),
    ));
    secret(
        &mut inputs,
        "ops-users",
        "reader-hash",
        &format!("{BCRYPT}\n"),
    );
    inputs.gateways.push(central_gateway(json!({"oidc": [{
        "issuer": "https://idp.example", "audience": "whizard",
        "groups_claim": "groups",
        "group_tenants": {"admins": ["team-b"], "ops-team": ["team-c"]}
    }]})));
    let plan = planner::plan(&inputs).unwrap();
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert_eq!(ready(&plan, "ops").0, "True");
    let text = gateway_yaml(&plan, &svc);
    let cfg = load(&text);

    let agent = cfg.user("agent-a").expect("agent-a of the example");
    assert_eq!(agent.tenants, vec!["team-a".to_string()]);
    assert!(agent.access.write && !agent.access.read);
    let raw: Value = serde_norway::from_str(&text).unwrap();
    let hash = raw["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "agent-a")
        .unwrap()["password_hash"]
        .as_str()
        .unwrap();
    assert!(verifies("change-me-agent-a", hash));
    assert!(!text.contains("change-me-agent-a"));

    let reader = cfg.user("ops-reader").unwrap();
    assert_eq!(reader.tenants, vec!["ops".to_string()]);
    assert!(reader.access.read && !reader.access.write);
    assert!(reader.certificate.is_none());
    let agent = cfg.user("ops-agent").unwrap();
    assert!(agent.password_hash.is_none());
    assert!(agent.access.read && agent.access.write);
    let cert = agent.certificate.as_ref().unwrap();
    assert!(cert.matches("agent.ops.example"));

    let p = &cfg.oidc[0].provider;
    assert_eq!(p.group_tenants["ops-team"], vec!["ops", "team-c"]);
    assert_eq!(p.group_tenants["admins"], vec!["team-b"]);
    // Only the reconciler-hashed password is kept (a given hash is in the Secret already).
    assert_eq!(
        plan.stored_hash_entries()
            .iter()
            .filter(|(n, _, _)| n.starts_with("ops-") || *n == "agent-a")
            .count(),
        1
    );
}

/// The second reconcile reuses the kept hash of a given password (0 hashes); a changed
/// password in the Secret is hashed anew.
#[test]
fn given_password_hash_is_reused_until_the_password_changes() {
    let (svc, mut inputs) = inputs();
    let first = planner::plan(&inputs).unwrap();
    let objs = render::render_plan(&first, &svc);
    let sec = objs
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "gateway-central-config")
        .unwrap();
    let stored =
        credentials::parse(sec["stringData"][credentials::HASHES_KEY].as_str().unwrap()).unwrap();
    assert!(stored.contains_key("agent-a"));
    inputs.password_hashes = stored.clone();
    let second = planner::plan(&inputs).unwrap();
    assert_eq!(second.password_hashes_computed, 0);
    assert_eq!(render::render_plan(&second, &svc), objs);

    // A trailing newline is not part of the password: still the same, nothing hashed.
    secret(&mut inputs, "agent-a-pw", "password", "change-me-agent-a\n");
    assert_eq!(planner::plan(&inputs).unwrap().password_hashes_computed, 0);
    secret(&mut inputs, "agent-a-pw", "password", "rotated");
    let third = planner::plan(&inputs).unwrap();
    assert_eq!(third.password_hashes_computed, 1);
    let u = third
        .access_users
        .iter()
        .find(|u| u.name == "agent-a")
        .unwrap();
    assert!(verifies("rotated", u.password_hash.as_ref().unwrap()));
    assert_ne!(u.password_hash.as_ref(), Some(&stored["agent-a"].hash));
}

/// A user name is unique across the Service: the first Tenant CR by name keeps it; a later
/// one, a name of a ruler user or a repeated certificate is refused on that Tenant only.
#[test]
fn name_and_certificate_clashes_are_refused_on_the_later_tenant() {
    let (svc, mut inputs) = inputs();
    inputs.tenants.push(tenant(
        "zz-late",
        json!([
            {"name": "agent-a", "access": ["write"],
             "passwordHashSecret": {"name": "h", "key": "k"}},
            {"name": "whizard-ruler-team-b", "access": ["read"],
             "passwordHashSecret": {"name": "h", "key": "k"}},
            {"name": "cert-2", "access": ["read"],
             "certificate": {"field": "cn", "value": "shared"}},
            {"name": "fine", "access": ["read"],
             "passwordHashSecret": {"name": "h", "key": "k"}}
        ]),
    ));
    inputs.tenants.push(tenant(
        "aa-early",
        json!([{"name": "cert-1", "access": ["read"],
                "certificate": {"field": "cn", "value": "shared"}}]),
    ));
    secret(&mut inputs, "h", "k", BCRYPT);
    let plan = planner::plan(&inputs).unwrap();
    let (status, reason, message) = ready(&plan, "zz-late");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "UserNameClash")
    );
    assert!(
        message.contains("already used by Tenant team-a"),
        "{message}"
    );
    assert!(message.contains("whizard-ruler-team-b"), "{message}");
    assert!(
        message.contains("already identifies user \"cert-1\""),
        "{message}"
    );
    assert_eq!(ready(&plan, "aa-early").0, "True");
    assert_eq!(ready(&plan, "team-a").0, "True");
    let cfg = load(&gateway_yaml(&plan, &svc));
    assert_eq!(cfg.user("agent-a").unwrap().tenants, vec!["team-a"]);
    assert_eq!(cfg.user("fine").unwrap().tenants, vec!["zz-late"]);
    assert_eq!(cfg.user("cert-1").unwrap().tenants, vec!["aa-early"]);
    assert!(cfg.user("cert-2").is_none());
    assert_eq!(
        cfg.user("whizard-ruler-team-b").unwrap().tenants,
        vec!["team-b"]
    );
}

/// A missing Secret, a bad access value or an unusable hash makes that Tenant Ready=False;
/// the Tenant keeps its stack and its good entries, every other Tenant is planned, and the
/// rendered config still loads. The referenced Secrets are the ones a reconcile reads.
#[test]
fn bad_entries_are_isolated_to_their_tenant() {
    let (svc, mut inputs) = inputs();
    inputs.tenants.push(tenant(
        "broken",
        json!([
            {"name": "no-secret", "access": ["write"],
             "passwordSecret": {"name": "absent", "key": "password"}},
            {"name": "bad-access", "access": ["admin"],
             "passwordHashSecret": {"name": "h", "key": "k"}},
            {"name": "plain-as-hash", "access": ["read"],
             "passwordHashSecret": {"name": "h", "key": "plain"}},
            {"name": "nothing", "access": ["read"]},
            {"oidcGroup": "no-provider"},
            {"name": "optional", "access": ["read"],
             "passwordSecret": {"name": "absent", "key": "p", "optional": true}},
            {"name": "ok", "access": ["read"],
             "passwordHashSecret": {"name": "h", "key": "k"}}
        ]),
    ));
    secret(&mut inputs, "h", "k", BCRYPT);
    secret(&mut inputs, "h", "plain", "hunter2");
    let names = planner::referenced_secret_names(&inputs);
    assert!(
        ["absent", "h", "agent-a-pw"]
            .iter()
            .all(|n| names.contains(*n)),
        "{names:?}"
    );
    let plan = planner::plan(&inputs).unwrap();
    let (status, reason, message) = ready(&plan, "broken");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "MissingSecret")
    );
    for want in [
        "Secret absent",
        "\"admin\" is not read or write",
        "plain-as-hash",
        "set passwordSecret, passwordHashSecret or certificate",
        "OIDC provider",
    ] {
        assert!(message.contains(want), "{want}: {message}");
    }
    let reasons: Vec<&str> = plan.problems.iter().map(|p| p.reason.as_str()).collect();
    assert!(reasons.contains(&"OidcNotConfigured"), "{reasons:?}");
    assert!(
        plan.problems
            .iter()
            .all(|p| p.tenant_cr.as_deref() == Some("broken")),
        "{:?}",
        plan.problems
    );
    for t in &plan.tenants {
        if t.cr_name != "broken" {
            assert_eq!(ready(&plan, &t.cr_name).0, "True", "{}", t.cr_name);
        }
    }
    // The tenant itself is planned (ruler, ingester) and its good entry rendered.
    assert!(plan.tenants.iter().any(|t| t.id == "broken"));
    assert!(plan.tenant_status["broken"].ruler.is_some());
    let cfg = load(&gateway_yaml(&plan, &svc));
    assert_eq!(cfg.user("ok").unwrap().tenants, vec!["broken"]);
    assert!(cfg.user("no-secret").is_none() && cfg.user("bad-access").is_none());
    // An absent optional Secret leaves its entry out without a problem.
    assert!(cfg.user("optional").is_none());
    assert!(!message.contains("\"optional\""), "{message}");
}

/// The Secrets of `spec.access` are among those a reconcile records as read, so a change to
/// one reconciles the Service at once (see the controller's Secret watch).
#[test]
fn access_secrets_are_watched() {
    let (_, inputs) = inputs();
    let watched = super::controller::Watched::default();
    watched.record(&inputs);
    let readers = watched.secret_readers("whizard", "agent-a-pw");
    assert_eq!(readers.len(), 1);
    assert_eq!(readers[0].name, "central");
    assert!(watched.secret_readers("other", "agent-a-pw").is_empty());
}

/// A `Gateway.spec.oidc` entry the gateway would refuse (a misspelt key, a wrong type) is left
/// out of the rendered config, which still loads, and is reported as a plan problem; the valid
/// provider beside it is kept.
#[test]
fn a_refused_oidc_provider_is_left_out_and_reported() {
    let (svc, mut inputs) = inputs();
    inputs.gateways.push(central_gateway(json!({"oidc": [
        {"issuer": "https://idp.example", "audience": "whizard"},
        {"isuer": "https://typo.example", "audience": "whizard"},
        {"issuer": "https://other.example", "audience": 7}
    ]})));
    let plan = planner::plan(&inputs).unwrap();
    let refused: Vec<&str> = plan
        .problems
        .iter()
        .filter(|p| p.reason == "InvalidOidcProvider")
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", plan.problems);
    assert!(refused[0].contains("Gateway central: spec.oidc[1]") && refused[0].contains("isuer"));
    assert!(refused[1].contains("spec.oidc[2]"), "{refused:?}");
    let cfg = load(&gateway_yaml(&plan, &svc));
    assert_eq!(cfg.oidc.len(), 1);
}
