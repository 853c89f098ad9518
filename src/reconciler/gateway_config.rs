//! Rendered configuration files: the router hashring (Thanos `hashrings.json`) and the
//! `whizard gateway` config (DESIGN.md "Gateway configuration").

use serde_json::{json, Value};

use super::crd::labels as L;
use super::planner::{effective, Plan, WriteRouting};
use kube::ResourceExt;

pub const GRPC_PORT: u16 = 10901;
pub const HTTP_PORT: u16 = 10902;
pub const REMOTE_WRITE_PORT: u16 = 19291;
pub const CAPNPROTO_PORT: u16 = 19391;
pub const GATEWAY_PORT: u16 = 9090;
pub const GATEWAY_METRICS_PORT: u16 = 9091;

/// The hashring file: one hashring per ingester with tenants (`<ns>/<ingester>`), endpoints one
/// per replica, then a `softs` catch-all (no tenants) over the zero-tenant ingesters labelled
/// `monitoring.whizard.io/soft-tenant=true`. The `softs` entry is omitted when it would have no
/// endpoints (Thanos refuses a hashring without endpoints), and so are the ingesters of
/// [`Plan::unrouted_ingesters`] (no replicas, or fewer than the replication factor).
pub fn hashrings(plan: &Plan, svc: &super::crd::ServiceSpec) -> Value {
    let ns = &plan.namespace;
    let endpoints = |name: &str, replicas: i32| -> Vec<Value> {
        (0..replicas.max(0))
            .map(|i| {
                let host = format!("ingester-{name}-{i}.ingester-{name}-operated.{ns}.svc");
                json!({
                    "address": format!("{host}:{GRPC_PORT}"),
                    "capnproto_address": format!("{host}:{CAPNPROTO_PORT}"),
                    "az": ""
                })
            })
            .collect()
    };
    let mut rings = Vec::new();
    let mut softs = Vec::new();
    for ing in &plan.ingesters {
        let eff = effective::ingester(svc, &ing.spec);
        let replicas = eff.common.replicas.unwrap_or(1);
        let name = ing.name_any();
        if ing.spec.tenants.is_empty() {
            let soft = ing
                .labels()
                .get(L::SOFT_TENANT)
                .is_some_and(|v| v == "true");
            if soft {
                softs.extend(endpoints(&name, replicas));
            }
            continue;
        }
        if plan.unrouted_ingesters.contains(&name) {
            // No replicas, or fewer than the replication factor: reported by the planner.
            continue;
        }
        rings.push(json!({
            "hashring": format!("{ns}/{name}"),
            "tenants": ing.spec.tenants,
            "endpoints": endpoints(&name, replicas),
        }));
    }
    if !softs.is_empty() {
        rings.push(json!({"hashring": "softs", "endpoints": softs}));
    }
    Value::Array(rings)
}

/// `http://<svc>.<ns>.svc:<port>`.
pub fn url(kind: &str, name: &str, ns: &str, port: u16) -> String {
    format!("http://{kind}-{name}.{ns}.svc:{port}")
}

/// The gateway config for `plan` (YAML text): tenants from the Tenant CRs, upstreams from the
/// Service's components, users for the rulers (the global ruler's write user with
/// `write_routing: by_label` and `default_tenant`, see [`WriteRouting`]) and the Tenants'
/// `spec.access` users, `oidc` providers (with the Tenants' OIDC groups in `group_tenants`).
/// `web` (the gateway's `webConfig`) selects HTTPS for the main listener and adds its
/// basic-auth users, with access to every tenant.
pub fn gateway_config(
    plan: &Plan,
    svc: &super::crd::ServiceSpec,
    web: &super::web::GatewayWeb,
    oidc: &[Value],
) -> String {
    let ns = &plan.namespace;
    let query_name = plan.queries[0].name_any();
    let query = url("query", &query_name, ns, HTTP_PORT);
    let read_upstream = match &svc.remote_query {
        Some(rq) if !rq.url.is_empty() => rq.url.trim_end_matches('/').to_string(),
        _ => url(
            "query-frontend",
            &plan.query_frontends[0].name_any(),
            ns,
            HTTP_PORT,
        ),
    };
    let router = url("router", &plan.routers[0].name_any(), ns, REMOTE_WRITE_PORT);
    let mut upstreams = json!({
        "query": read_upstream,
        "receive": format!("{router}/api/v1/receive"),
        "otlp": format!("{router}/api/v1/otlp"),
        "rules": query,
    });
    let rws: Vec<Value> = plan
        .remote_writes
        .iter()
        .map(|rw| {
            let mut v = json!({"name": rw.name, "url": rw.url});
            if !rw.headers.is_empty() {
                v["headers"] = json!(rw.headers);
            }
            if let Some(t) = rw.timeout_seconds {
                v["timeout_seconds"] = json!(t);
            }
            v
        })
        .collect();
    if !rws.is_empty() {
        upstreams["remote_writes"] = Value::Array(rws);
    }
    let mut tenant_ids: Vec<String> = plan.tenants.iter().map(|t| t.id.clone()).collect();
    let mut tenants: Vec<Value> = plan
        .tenants
        .iter()
        .map(|t| {
            let mut v = json!({"id": t.id});
            if !t.spec.external_labels.is_empty() {
                v["external_labels"] = json!(t.spec.external_labels);
            }
            if let Some(l) = &t.spec.limits {
                let mut m = serde_json::Map::new();
                if let Some(x) = l.requests_per_second {
                    m.insert("requests_per_second".into(), json!(x));
                }
                if let Some(x) = l.write_samples_per_second {
                    m.insert("write_samples_per_second".into(), json!(x));
                }
                if let Some(x) = l.max_body_bytes {
                    m.insert("max_body_bytes".into(), json!(x));
                }
                if !m.is_empty() {
                    v["limits"] = Value::Object(m);
                }
            }
            v
        })
        .collect();
    // Users may name the default tenant (global ruler): declare it.
    for u in &plan.users {
        for t in &u.tenants {
            if !tenant_ids.contains(t) {
                tenant_ids.push(t.clone());
                tenants.push(json!({"id": t}));
            }
        }
    }
    let mut users: Vec<Value> = plan
        .users
        .iter()
        .map(|u| {
            let mut v = json!({
                "name": u.name,
                "password_hash": u.password_hash,
                "tenants": u.tenants,
                "access": u.access,
            });
            // Only users that do not route writes `named` (the default) carry the keys, so
            // every other user renders as before.
            match plan.write_routing.get(&u.name) {
                None => {}
                Some(WriteRouting::ByLabel { default_tenant }) => {
                    v["write_routing"] = json!("by_label");
                    v["default_tenant"] = json!(default_tenant);
                }
            }
            v
        })
        .collect();
    // Tenant access users (Tenant.spec.access), validated by the planner.
    for u in &plan.access_users {
        let mut v = json!({"name": u.name, "tenants": u.tenants, "access": u.access});
        if let Some(h) = &u.password_hash {
            v["password_hash"] = json!(h);
        }
        if let Some(c) = &u.certificate {
            v["certificate"] = json!({"field": c.field, "value": c.value});
        }
        users.push(v);
    }
    for u in &web.users {
        users.push(json!({
            "name": u.name,
            "password_hash": u.password_hash,
            "tenants": tenant_ids,
            "access": ["read", "write"],
        }));
    }
    let mut listen = json!({"metrics": format!("0.0.0.0:{GATEWAY_METRICS_PORT}")});
    match &web.tls {
        None => listen["http"] = json!(format!("0.0.0.0:{GATEWAY_PORT}")),
        Some(t) => {
            listen["https"] = json!(format!("0.0.0.0:{GATEWAY_PORT}"));
            let mut tls = json!({
                "cert_file": super::web::file(&t.cert_secret),
                "key_file": super::web::file(&t.key_secret),
            });
            if let Some(ca) = &t.client_ca_secret {
                tls["client_ca_file"] = json!(super::web::file(ca));
                tls["client_auth"] = json!("optional");
            }
            listen["tls"] = tls;
        }
    }
    let mut doc = json!({
        "listen": listen,
        "upstreams": upstreams,
        "tenancy": {
            "header": plan.tenancy.header,
            "label": plan.tenancy.label,
            "inject_label_on_write": true,
        },
        "tenants": tenants,
        "users": users,
    });
    if !oidc.is_empty() {
        doc["oidc"] = json!(oidc);
    }
    let mut out = String::from("# Generated by whizard reconciler; do not edit.\n");
    out.push_str(&serde_norway::to_string(&doc).expect("gateway config serializes"));
    out
}
