//! Per-tenant access (`Tenant.spec.access`): who may write and read a tenant through the
//! gateway.
//!
//! Each entry is either
//! * a gateway **user** (`name`, unique across the Service: other Tenants' users and the
//!   gateways' `webConfig` users; not starting with `whizard-`, the rulers' names) with
//!   `access` (`read` and/or `write`) to this tenant only, logging in with
//!   - `passwordSecret`: a Secret key with the plaintext password (a trailing newline is not
//!     part of it), hashed (argon2id) by the reconciler; the hash is kept in the gateway
//!     config Secret with a keyed check (see [`super::credentials`]), so an unchanged
//!     password is not hashed again;
//!   - or `passwordHashSecret`: a Secret key with a bcrypt or argon2id hash;
//!   - and/or `certificate {field: cn|dns|uri|email, value}`: a verified client certificate
//!     (needs a Gateway `webConfig` with a client CA);
//! * or an **OIDC group** (`oidcGroup`): added to `group_tenants` of every OIDC provider of the
//!   gateway (`Gateway.spec.oidc`, which needs a `groups_claim`). The gateway takes an OIDC
//!   identity's access from its token's access claim, not from the group, so such an entry
//!   has no `access`.
//!
//! Secrets are read in the Service's namespace (Tenants are cluster-scoped); an entry whose
//! Secret is absent and marked `optional: true` is left out without a problem. A bad entry
//! (missing Secret or key, name or certificate already used, bad access value, …) is left out
//! and reported as a [`Problem`] of its Tenant (`Ready=False`); the Tenant itself and every
//! other entry are planned. On a clash the first Tenant CR by name keeps the name.

use std::collections::{BTreeMap, BTreeSet};

use super::crd::{AccessCertificate, SecretKeySelector, TenantAccess, TenantSpec};
use super::credentials::Credentials;
use super::model::{Problem, Secrets, TenantInfo};

/// A gateway user declared by a Tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUser {
    pub name: String,
    /// Name of the Tenant CR declaring it.
    pub tenant_cr: String,
    pub password_hash: Option<String>,
    /// The keyed check of a hash the reconciler computed (`passwordSecret`); `None` for a
    /// hash read from `passwordHashSecret`, which is not kept.
    pub check: Option<String>,
    pub certificate: Option<AccessCertificate>,
    pub tenants: Vec<String>,
    pub access: Vec<String>,
}

/// The access of a Service's tenants.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub users: Vec<AccessUser>,
    /// OIDC group → tenant ids (sorted).
    pub groups: BTreeMap<String, Vec<String>>,
    pub problems: Vec<Problem>,
}

/// Names of the Secrets a Tenant's access entries read.
pub fn secret_names(spec: &TenantSpec) -> impl Iterator<Item = String> + '_ {
    spec.access.iter().flat_map(|a| {
        [&a.password_secret, &a.password_hash_secret]
            .into_iter()
            .flatten()
            .map(|s| s.name.clone())
    })
}

fn secret_value(secrets: &Secrets, sel: &SecretKeySelector) -> Option<String> {
    secrets
        .get(&sel.name)
        .and_then(|s| s.get(&sel.key))
        .cloned()
}

/// The normalised `(field, value)` of a certificate mapping, as the gateway compares it, or
/// why the gateway would refuse it.
fn certificate_key(c: &AccessCertificate) -> Result<(String, String), String> {
    if !["cn", "dns", "uri", "email"].contains(&c.field.as_str()) {
        return Err(format!(
            "certificate.field {:?} is not cn, dns, uri or email",
            c.field
        ));
    }
    let v = &c.value;
    if v.is_empty() {
        return Err("certificate.value is empty".into());
    }
    if v.trim() != v || v.chars().any(char::is_control) {
        return Err(
            "certificate.value must not start or end with whitespace or contain control characters"
                .into(),
        );
    }
    if c.field != "cn" && !v.is_ascii() {
        return Err(format!(
            "a {} certificate.value is ASCII (internationalised names in their xn-- form)",
            c.field
        ));
    }
    let v = if c.field == "dns" {
        v.to_ascii_lowercase()
    } else {
        v.clone()
    };
    Ok((c.field.clone(), v))
}

/// Resolves the access entries of `tenants`. `reserved` are user names taken by the
/// reconciler (rulers) and the gateways' `webConfig`; `oidc_configured` whether any gateway
/// of the Service has an OIDC provider with a `groups_claim` (without one, groups are never
/// read from tokens).
pub fn resolve(
    tenants: &[TenantInfo],
    secrets: &Secrets,
    reserved: &BTreeSet<String>,
    oidc_configured: bool,
    creds: &mut Credentials,
) -> Resolved {
    let mut out = Resolved::default();
    // user name → Tenant CR; certificate → user name.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut certs: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut order: Vec<&TenantInfo> = tenants.iter().collect();
    order.sort_by(|a, b| a.cr_name.cmp(&b.cr_name));
    for t in order {
        for (i, a) in t.spec.access.iter().enumerate() {
            let field = format!("spec.access[{i}]");
            match entry(
                t,
                a,
                secrets,
                reserved,
                oidc_configured,
                &names,
                &certs,
                creds,
            ) {
                Ok(Entry::User(u, cert)) => {
                    names.insert(u.name.clone(), t.cr_name.clone());
                    if let Some(c) = cert {
                        certs.insert(c, u.name.clone());
                    }
                    out.users.push(*u);
                }
                Ok(Entry::Skip) => {}
                Ok(Entry::Group(g)) => {
                    let ids = out.groups.entry(g).or_default();
                    if !ids.contains(&t.id) {
                        ids.push(t.id.clone());
                        ids.sort();
                    }
                }
                Err((reason, message)) => out.problems.push(Problem {
                    tenant_cr: Some(t.cr_name.clone()),
                    reason: reason.to_string(),
                    message: format!("{field}: {message} (entry left out)"),
                }),
            }
        }
    }
    out
}

enum Entry {
    User(Box<AccessUser>, Option<(String, String)>),
    Group(String),
    /// A Secret marked `optional: true` is absent: the entry is left out silently.
    Skip,
}

#[allow(clippy::too_many_arguments)]
fn entry(
    t: &TenantInfo,
    a: &TenantAccess,
    secrets: &Secrets,
    reserved: &BTreeSet<String>,
    oidc_configured: bool,
    names: &BTreeMap<String, String>,
    certs: &BTreeMap<(String, String), String>,
    creds: &mut Credentials,
) -> Result<Entry, (&'static str, String)> {
    let invalid = |m: String| ("InvalidAccess", m);
    let has_login =
        a.password_secret.is_some() || a.password_hash_secret.is_some() || a.certificate.is_some();
    match (a.name.is_empty(), a.oidc_group.is_empty()) {
        (false, false) => {
            return Err(invalid(
                "set either name (a user) or oidcGroup, not both".into(),
            ))
        }
        (true, true) => return Err(invalid("set name (a user) or oidcGroup".into())),
        (true, false) => {
            if has_login {
                return Err(invalid(
                    "an oidcGroup entry has no password or certificate".into(),
                ));
            }
            if !a.access.is_empty() {
                return Err(invalid(
                    "an oidcGroup entry has no access: the gateway takes an OIDC identity's \
                     read/write access from its token's access claim"
                        .into(),
                ));
            }
            if !oidc_configured {
                return Err((
                    "OidcNotConfigured",
                    format!(
                        "oidcGroup {:?}: no Gateway of the Service has an OIDC provider \
                         with groups_claim (Gateway.spec.oidc)",
                        a.oidc_group
                    ),
                ));
            }
            return Ok(Entry::Group(a.oidc_group.clone()));
        }
        (false, true) => {}
    }
    let name = &a.name;
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "user name {name:?} must not contain ':' or control characters"
        )));
    }
    if a.access.is_empty() {
        return Err(invalid(format!("user {name:?}: list read and/or write")));
    }
    let mut access: Vec<String> = Vec::new();
    for x in &a.access {
        if x != "read" && x != "write" {
            return Err(invalid(format!(
                "user {name:?}: access {x:?} is not read or write"
            )));
        }
        if !access.contains(x) {
            access.push(x.clone());
        }
    }
    access.sort();
    if reserved.contains(name) || name.starts_with("whizard-") {
        return Err((
            "UserNameClash",
            format!(
                "user name {name:?} is taken by a ruler or a Gateway webConfig user (names \
                 starting with whizard- are the reconciler's)"
            ),
        ));
    }
    if let Some(other) = names.get(name) {
        return Err((
            "UserNameClash",
            if *other == t.cr_name {
                format!("user {name:?} is declared twice")
            } else {
                format!("user name {name:?} is already used by Tenant {other}")
            },
        ));
    }
    if !has_login {
        return Err(invalid(format!(
            "user {name:?}: set passwordSecret, passwordHashSecret or certificate"
        )));
    }
    let cert = match &a.certificate {
        None => None,
        Some(c) => {
            let k = certificate_key(c).map_err(|m| invalid(format!("user {name:?}: {m}")))?;
            if let Some(other) = certs.get(&k) {
                return Err((
                    "CertificateClash",
                    format!(
                        "user {name:?}: certificate {} {:?} already identifies user {other:?}",
                        k.0, k.1
                    ),
                ));
            }
            Some(k)
        }
    };
    let missing = |sel: &SecretKeySelector, what: &str| {
        (
            "MissingSecret",
            format!(
                "user {name:?}: {what}: Secret {} has no key {:?} (or does not exist)",
                sel.name, sel.key
            ),
        )
    };
    let (password_hash, check) = match (&a.password_secret, &a.password_hash_secret) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "user {name:?}: set passwordSecret or passwordHashSecret, not both"
            )))
        }
        (Some(sel), _) | (_, Some(sel))
            if sel.optional == Some(true) && secret_value(secrets, sel).is_none() =>
        {
            return Ok(Entry::Skip)
        }
        (Some(sel), None) => {
            let pw = secret_value(secrets, sel).ok_or_else(|| missing(sel, "passwordSecret"))?;
            // A trailing newline (`kubectl create secret --from-file` of an echoed file) is
            // not part of the password: Prometheus trims its `password_file` too.
            let pw = pw.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(invalid(format!(
                    "user {name:?}: passwordSecret {}/{} is empty",
                    sel.name, sel.key
                )));
            }
            let (hash, check) = creds.hash_given(name, &pw);
            (Some(hash), Some(check))
        }
        (None, Some(sel)) => {
            let h = secret_value(secrets, sel)
                .ok_or_else(|| missing(sel, "passwordHashSecret"))?
                .trim()
                .to_string();
            // Checked here: a hash the gateway rejects would make it refuse the whole config.
            whizard_core::config::PasswordHash::parse(&h).map_err(|m| {
                invalid(format!(
                    "user {name:?}: passwordHashSecret {}/{}: {m}",
                    sel.name, sel.key
                ))
            })?;
            (Some(h), None)
        }
        (None, None) => (None, None),
    };
    Ok(Entry::User(
        Box::new(AccessUser {
            name: name.clone(),
            tenant_cr: t.cr_name.clone(),
            password_hash,
            check,
            certificate: a.certificate.clone(),
            tenants: vec![t.id.clone()],
            access,
        }),
        cert,
    ))
}

/// A `Gateway.spec.oidc` entry (free-form in the CRD) the gateway would refuse: an unknown
/// key or a value of the wrong type.
#[derive(Debug, thiserror::Error)]
#[error("spec.oidc[{index}]: {source} (provider left out of the gateway config)")]
pub struct OidcProviderError {
    pub index: usize,
    #[source]
    pub source: whizard_core::config::file::FromJsonError,
}

/// The gateway's `oidc[]` entries: `providers` (from `Gateway.spec.oidc`) read through the
/// gateway's own model, with `groups` added to each one's `group_tenants`. A provider the
/// gateway would refuse is left out and returned as an error: the rest of the config still
/// loads.
pub fn oidc_entries(
    providers: &[serde_json::Value],
    groups: &BTreeMap<String, Vec<String>>,
) -> (
    Vec<whizard_core::config::file::Oidc>,
    Vec<OidcProviderError>,
) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, p) in providers.iter().enumerate() {
        let mut p: whizard_core::config::file::Oidc =
            match whizard_core::config::file::from_json(p.clone()) {
                Ok(p) => p,
                Err(source) => {
                    errors.push(OidcProviderError { index, source });
                    continue;
                }
            };
        if !groups.is_empty() {
            // Sorted and without duplicates, whether a tenant came from the provider or a group.
            let mut merged: BTreeMap<String, BTreeSet<String>> =
                std::mem::take(&mut p.group_tenants)
                    .into_iter()
                    .map(|(g, ids)| (g, ids.into_iter().collect()))
                    .collect();
            for (g, ids) in groups {
                merged
                    .entry(g.clone())
                    .or_default()
                    .extend(ids.iter().cloned());
            }
            p.group_tenants = merged
                .into_iter()
                .map(|(g, ids)| (g, ids.into_iter().collect()))
                .collect();
        }
        entries.push(p);
    }
    (entries, errors)
}

#[cfg(test)]
mod oidc_entries_tests {
    use super::*;
    use serde_json::json;

    /// Groups merge sorted and deduplicated; a provider the gateway would refuse is left out
    /// and reported, the others kept.
    #[test]
    fn bad_providers_are_reported_and_groups_merged() {
        let providers = [
            json!({"issuer": "https://a", "group_tenants": {"ops": ["t2", "t1"]}}),
            json!({"issuer": "https://b", "tls": {"ca": "x"}}),
            json!("not a provider"),
        ];
        let groups = BTreeMap::from([("ops".to_string(), vec!["t1".to_string(), "t3".into()])]);
        let (ok, bad) = oidc_entries(&providers, &groups);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].group_tenants["ops"], ["t1", "t2", "t3"]);
        let bad: Vec<usize> = bad.iter().map(|e| e.index).collect();
        assert_eq!(bad, [1, 2]);
    }
}
