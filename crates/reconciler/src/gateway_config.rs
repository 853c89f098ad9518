//! Rendered configuration files: the router hashring (Thanos `hashrings.json`) and the
//! `whizard gateway` config (DESIGN.md "Gateway configuration").

use serde_json::{json, Value};
use whizard_core::config::file;

use super::crd::labels as L;
use super::model::WriteRouting;
use super::planner::{effective, Plan};
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
///
/// Built as the gateway's own raw model ([`whizard_core::config::file`]), so a change of the
/// config format fails this crate's build rather than the gateways of a cluster.
pub fn gateway_config(
    plan: &Plan,
    svc: &super::crd::ServiceSpec,
    web: &super::web::GatewayWeb,
    oidc: &[file::Oidc],
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
    let upstreams = file::Upstreams {
        query: Some(read_upstream),
        receive: Some(format!("{router}/api/v1/receive")),
        otlp: Some(format!("{router}/api/v1/otlp")),
        rules: Some(query),
        remote_writes: plan
            .remote_writes
            .iter()
            .map(|rw| file::RemoteWriteTarget {
                name: Some(rw.name.clone()),
                url: Some(rw.url.clone()),
                headers: rw.headers.clone(),
                // Whole seconds: core writes them back as integers.
                timeout_seconds: rw.timeout_seconds.map(|t| t as f64),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut tenant_ids: Vec<String> = plan.tenants.iter().map(|t| t.id.clone()).collect();
    let mut tenants: Vec<file::Tenant> = plan
        .tenants
        .iter()
        .map(|t| file::Tenant {
            id: Some(t.id.clone()),
            external_labels: t.spec.external_labels.clone(),
            // Limits without any value are left out by the serialiser.
            limits: t
                .spec
                .limits
                .as_ref()
                .map(|l| file::Limits {
                    requests_per_second: l.requests_per_second,
                    write_samples_per_second: l.write_samples_per_second,
                    max_body_bytes: l.max_body_bytes,
                    ..Default::default()
                })
                .unwrap_or_default(),
        })
        .collect();
    // Users may name the default tenant (global ruler): declare it.
    for u in &plan.users {
        for t in &u.tenants {
            if !tenant_ids.contains(t) {
                tenant_ids.push(t.clone());
                tenants.push(file::Tenant {
                    id: Some(t.clone()),
                    ..Default::default()
                });
            }
        }
    }
    let mut users: Vec<file::User> = plan
        .users
        .iter()
        .map(|u| {
            // Only users that do not route writes `named` (the default) carry the keys, so
            // every other user renders as before.
            let (write_routing, default_tenant) = match plan.write_routing.get(&u.name) {
                None => (None, None),
                Some(WriteRouting::ByLabel { default_tenant }) => {
                    (Some("by_label".to_string()), Some(default_tenant.clone()))
                }
            };
            file::User {
                name: Some(u.name.clone()),
                password_hash: Some(u.password_hash.clone()),
                tenants: u.tenants.clone(),
                access: u.access.clone(),
                write_routing,
                default_tenant,
                ..Default::default()
            }
        })
        .collect();
    // Tenant access users (Tenant.spec.access), validated by the planner.
    users.extend(plan.access_users.iter().map(|u| file::User {
        name: Some(u.name.clone()),
        password_hash: u.password_hash.clone(),
        certificate: u.certificate.as_ref().map(|c| file::UserCertificate {
            field: Some(c.field.clone()),
            value: Some(c.value.clone()),
        }),
        tenants: u.tenants.clone(),
        access: u.access.clone(),
        ..Default::default()
    }));
    users.extend(web.users.iter().map(|u| file::User {
        name: Some(u.name.clone()),
        password_hash: Some(u.password_hash.clone()),
        tenants: tenant_ids.clone(),
        access: vec!["read".into(), "write".into()],
        ..Default::default()
    }));
    let main = Some(format!("0.0.0.0:{GATEWAY_PORT}"));
    let mut listen = file::Listen {
        metrics: Some(format!("0.0.0.0:{GATEWAY_METRICS_PORT}")),
        ..Default::default()
    };
    match &web.tls {
        None => listen.http = main,
        Some(t) => {
            listen.https = main;
            let client_ca_file = t.client_ca_secret.as_ref().map(super::web::file);
            listen.tls = Some(file::ListenTls {
                cert_file: Some(super::web::file(&t.cert_secret)),
                key_file: Some(super::web::file(&t.key_secret)),
                client_auth: client_ca_file.as_ref().map(|_| "optional".to_string()),
                client_ca_file,
                ..Default::default()
            });
        }
    }
    let doc = file::File {
        listen: Some(listen),
        upstreams: Some(upstreams),
        tenancy: file::Tenancy {
            header: plan.tenancy.header.clone(),
            label: plan.tenancy.label.clone(),
            inject_label_on_write: true,
        },
        tenants,
        users,
        oidc: oidc.to_vec(),
        ..Default::default()
    };
    // Through a JSON value so that keys come out sorted, as they always have (the config
    // Secret changes, and the gateways roll, only when the content does). The model has
    // string keys and plain values only, so neither step can fail.
    let value = serde_json::to_value(&doc).expect("gateway config serializes");
    let mut out = String::from("# Generated by whizard reconciler; do not edit.\n");
    out.push_str(&serde_norway::to_string(&value).expect("gateway config serializes"));
    out
}
