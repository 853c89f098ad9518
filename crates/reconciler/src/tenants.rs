//! Which Tenants a Service has: its Tenant CRs, validated, with their storage resolved.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::crd::{labels as L, *};
use super::model::{problem, Inputs, Problem, TenantInfo};
use super::naming::{has_service, is_label_value, label, nonempty, parse_duration, service_key};

/// The tenants of a Service after validation.
#[derive(Debug, Clone, Default)]
pub struct CheckedTenants {
    /// Valid tenants, sorted by id.
    pub tenants: Vec<TenantInfo>,
    /// One problem per skipped Tenant CR.
    pub problems: Vec<Problem>,
    /// Ids of skipped tenants (not planned, but kept where the cluster state has them).
    pub held: BTreeSet<String>,
}

/// The tenants of the Service, sorted by id. A Tenant CR that cannot be planned is skipped
/// with a [`Problem`] naming it: an id that is not a Kubernetes label value
/// (`InvalidTenantId`), an id already used by another Tenant CR (`DuplicateTenant`, the CR
/// first by name wins), a Storage that does not exist (`StorageNotFound`), an unparsable
/// `spec.retention` (`InvalidRetention`).
pub fn tenants_of(inputs: &Inputs) -> CheckedTenants {
    let key = service_key(&inputs.service);
    let default_storage = inputs
        .service
        .spec
        .storage
        .as_ref()
        .filter(|r| !r.name.is_empty())
        .map(|r| {
            let ns = if r.namespace.is_empty() {
                inputs.service.namespace().unwrap_or_default()
            } else {
                r.namespace.clone()
            };
            (ns, r.name.clone())
        });
    let mut out: Vec<TenantInfo> = Vec::new();
    let mut problems = Vec::new();
    let mut held = BTreeSet::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut list: Vec<&Tenant> = inputs
        .tenants
        .iter()
        .filter(|t| has_service(&t.metadata, &key) && t.metadata.deletion_timestamp.is_none())
        .collect();
    list.sort_by_key(|t| t.name_any());
    for t in list {
        let id = nonempty(&t.spec.tenant, &t.name_any());
        let cr = t.name_any();
        let mut skip = |reason: &str, message: String, hold: bool| {
            if hold {
                held.insert(id.clone());
            }
            problems.push(problem(Some(&cr), reason, format!("skipped: {message}")));
        };
        if !is_label_value(&id) {
            skip(
                "InvalidTenantId",
                format!(
                    "tenant id {id:?} is not a Kubernetes label value (at most 63 characters \
                     of [A-Za-z0-9-_.], alphanumeric at both ends)"
                ),
                true,
            );
            continue;
        }
        if let Some(first) = seen.get(&id) {
            skip(
                "DuplicateTenant",
                format!("tenant id {id:?} is already used by Tenant {first}"),
                false,
            );
            continue;
        }
        seen.insert(id.clone(), cr.clone());
        if let Some(r) = &t.spec.retention {
            let bad: Vec<String> = [
                ("retentionRaw", &r.retention_raw),
                ("retention5m", &r.retention_5m),
                ("retention1h", &r.retention_1h),
            ]
            .iter()
            .filter(|(_, v)| !v.is_empty() && parse_duration(v).is_none())
            .map(|(f, v)| format!("spec.retention.{f} {v:?}"))
            .collect();
            if !bad.is_empty() {
                skip(
                    "InvalidRetention",
                    format!("invalid duration {}", bad.join(", ")),
                    true,
                );
                continue;
            }
        }
        let storage = match label(&t.metadata, L::STORAGE).unwrap_or("") {
            "" | L::DEFAULT_STORAGE => default_storage.clone(),
            L::LOCAL_STORAGE => None,
            other => {
                let (ns, name) = other.split_once('.').unwrap_or(("", other));
                let ns = if ns.is_empty() {
                    inputs.service.namespace().unwrap_or_default()
                } else {
                    ns.to_string()
                };
                Some((ns, name.to_string()))
            }
        };
        if let Some((ns, name)) = &storage {
            let found = inputs
                .storages
                .iter()
                .any(|s| s.namespace().as_deref() == Some(ns.as_str()) && &s.name_any() == name);
            if !found {
                skip(
                    "StorageNotFound",
                    format!("Storage {ns}.{name} not found (label {})", L::STORAGE),
                    true,
                );
                continue;
            }
        }
        out.push(TenantInfo {
            cr_name: t.name_any(),
            exclusive: label(&t.metadata, L::EXCLUSIVE) == Some("true"),
            id,
            storage,
            spec: t.spec.clone(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    CheckedTenants {
        tenants: out,
        problems,
        held,
    }
}
