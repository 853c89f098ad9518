//! Names, labels and durations: the rules every generated object name and linking label
//! follows (DNS labels, md5-suffixed short names, the service and managed-by labels).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use md5::{Digest, Md5};

use super::crd::{labels as L, Retention, Service};

/// `<ns>.<name>`, the value of the service label.
pub fn service_key(svc: &Service) -> String {
    format!("{}.{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

pub fn nonempty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

/// Parses Whizard/Prometheus durations (`1y2w3d4h5m6s7ms`) into seconds (ms rounded down).
pub fn parse_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit_ms: u64 = match c {
            'y' => 365 * 86_400_000,
            'w' => 7 * 86_400_000,
            'd' => 86_400_000,
            'h' => 3_600_000,
            's' => 1000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        num.clear();
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total_ms / 1000)
}

/// Short, DNS-safe names: longer than `max` → cut and suffixed with 8 hex digits of md5.
pub fn short_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let digest = Md5::digest(name.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = max.saturating_sub(9);
    let head: String = name.chars().take(keep).collect();
    format!("{}-{hex}", head.trim_end_matches('-'))
}

/// Longest name of a generated Ingester or Compactor: its StatefulSet `compactor-<name>` must
/// stay within 52 characters (the pods' `controller-revision-hash` label is `<sts>-<10>`,
/// at most 63) and the headless Service `compactor-<name>-operated` within 63.
pub const MAX_SLOT_NAME: usize = 42;
/// Longest prefix `<svc>-<storage>` of generated Ingester/Compactor names (room for
/// `-auto-<i>`, `-r<hex>-<i>` and `-exclusive-…`).
pub const MAX_PREFIX: usize = 30;

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes label value (at most 63 characters, `[A-Za-z0-9]` at both ends, `-_.` inside).
/// Tenant ids must be label values: they label the Ruler (and RuleGroups name their tenant
/// with a label).
pub fn is_label_value(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(ok)
        && s.ends_with(ok)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `s` lowercased, every character outside `[a-z0-9]` replaced by `-`, runs of `-` collapsed,
/// no `-` at either end.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The name of an object made for tenant `id`: `<prefix>-<id>` when that is a valid DNS label
/// of at most `max` characters (so names of well-formed ids never change); otherwise the id
/// sanitised (lowercase, `[a-z0-9-]`), cut to fit, and suffixed with 8 hex digits of the md5
/// of the prefix and the exact id, so `Prod_Cluster.East` and `prod-cluster-east` get
/// different names. The planner still refuses to render two objects under one name (see
/// [`plan`](super::planner::plan)), so even an md5 prefix collision cannot merge two tenants.
pub fn tenant_object_name(prefix: &str, id: &str, max: usize) -> String {
    let plain = if prefix.is_empty() {
        id.to_string()
    } else {
        format!("{prefix}-{id}")
    };
    if is_dns_label(&plain) && plain.len() <= max {
        return plain;
    }
    let digest = Md5::digest(format!("{prefix}\n{id}").as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable = [prefix.to_string(), sanitize(id)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let head: String = readable.chars().take(max.saturating_sub(9)).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        hex
    } else {
        format!("{head}-{hex}")
    }
}

/// Whizard's per-tenant ruler name: the tenant, at most 30 characters (ids that are not DNS
/// labels get a hash suffix, see [`tenant_object_name`]).
pub fn ruler_name(tenant: &str) -> String {
    if is_dns_label(tenant) {
        short_name(tenant, 30)
    } else {
        tenant_object_name("", tenant, 30)
    }
}

fn storage_part(storage: &Option<(String, String)>) -> String {
    match storage {
        Some((_, name)) => name.clone(),
        None => L::LOCAL_STORAGE.to_string(),
    }
}

/// `<svc>-<storage name or "local">`, the prefix of generated Ingester and Compactor names
/// (and the Store's name), at most [`MAX_PREFIX`] characters.
pub fn slot_prefix(svc_name: &str, storage: &Option<(String, String)>) -> String {
    short_name(
        &dns(&format!("{svc_name}-{}", storage_part(storage))),
        MAX_PREFIX,
    )
}

/// The name prefix of a compactor retention class: [`slot_prefix`] for the Service's
/// retention, `<slot prefix>-r<6 hex of md5(retention)>` for a tenant's own.
pub fn compactor_prefix(
    svc_name: &str,
    storage: &(String, String),
    retention: &Retention,
    base: &Retention,
) -> String {
    let base_prefix = slot_prefix(svc_name, &Some(storage.clone()));
    if retention == base {
        return base_prefix;
    }
    let r = serde_json::to_string(retention).unwrap();
    let digest = Md5::digest(r.as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{base_prefix}-r{hex}")
}

pub fn dns(s: &str) -> String {
    s.to_lowercase().replace(['_', '.'], "-")
}

pub fn has_service(meta: &ObjectMeta, key: &str) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(L::SERVICE))
        .is_some_and(|v| v == key)
}

pub fn label<'a>(meta: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(k))
        .map(|s| s.as_str())
}

pub fn is_managed(meta: &ObjectMeta) -> bool {
    label(meta, L::MANAGED_BY) == Some(L::MANAGED_BY_VALUE)
}

pub fn managed_meta(name: &str, ns: &str, svc_key: &str, extra: &[(&str, String)]) -> ObjectMeta {
    let mut labels = BTreeMap::new();
    labels.insert(L::SERVICE.to_string(), svc_key.to_string());
    labels.insert(L::MANAGED_BY.to_string(), L::MANAGED_BY_VALUE.to_string());
    for (k, v) in extra {
        labels.insert(k.to_string(), v.clone());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// `<ns>.<name>` → `(ns, name)`.
pub fn storage_of(v: &str) -> (String, String) {
    let (ns, name) = v.split_once('.').unwrap_or(("", v));
    (ns.to_string(), name.to_string())
}

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
