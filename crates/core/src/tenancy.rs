//! Which tenant(s) a request acts for (DESIGN.md "Tenant of a request").
//!
//! Pure: takes the authenticated identity and what the request names, returns the tenants the
//! request is scoped to, borrowed from the identity so the hot path allocates nothing.

use crate::auth::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}

/// The tenants one request acts for: never empty; exactly one for writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    tenants: &'a [String],
}

impl<'a> Scope<'a> {
    pub fn tenants(&self) -> &'a [String] {
        self.tenants
    }
    /// The single tenant, when the scope has exactly one.
    pub fn single(&self) -> Option<&'a str> {
        match self.tenants {
            [one] => Some(one.as_str()),
            _ => None,
        }
    }
    /// Value for the upstream tenant header: the tenant, or the tenants joined by `|`.
    pub fn header_value(&self) -> String {
        self.tenants.join("|")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    #[error("tenant {0:?} is not one of the tenants of this identity")]
    NotAllowed(String),
    #[error("this identity may not {0} (missing access)")]
    MissingAccess(&'static str),
    #[error("this identity writes for several tenants; name one with the path prefix /{{tenant}}/api/v1/... or the {header} header")]
    Ambiguous { header: String },
    #[error("the path names tenant {path:?} but the {header} header names {value:?}")]
    Conflict {
        path: String,
        header: String,
        value: String,
    },
    #[error("the identity has no tenants")]
    NoTenants,
}

impl TenancyError {
    /// HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            TenancyError::NotAllowed(_)
            | TenancyError::MissingAccess(_)
            | TenancyError::NoTenants => 403,
            TenancyError::Ambiguous { .. } | TenancyError::Conflict { .. } => 400,
        }
    }
}

/// Resolves the scope of a request.
///
/// `by_path`: tenant from the `/{tenant}/api/v1/...` prefix; `by_header`: the value of the
/// tenancy header the client sent (a selector among the identity's tenants, never trusted alone).
pub fn resolve<'a>(
    identity: &'a Identity,
    by_path: Option<&str>,
    by_header: Option<&str>,
    header_name: &str,
    op: Operation,
) -> Result<Scope<'a>, TenancyError> {
    let allowed = match op {
        Operation::Read => identity.access.read,
        Operation::Write => identity.access.write,
    };
    if !allowed {
        return Err(TenancyError::MissingAccess(op.as_str()));
    }
    if identity.tenants.is_empty() {
        return Err(TenancyError::NoTenants);
    }
    let named = match (by_path, by_header) {
        (Some(p), Some(h)) if p != h => {
            return Err(TenancyError::Conflict {
                path: p.to_string(),
                header: header_name.to_string(),
                value: h.to_string(),
            })
        }
        (Some(t), _) | (None, Some(t)) => Some(t),
        (None, None) => None,
    };
    match named {
        Some(t) => match identity.tenants.binary_search_by(|x| x.as_str().cmp(t)) {
            Ok(i) => Ok(Scope {
                tenants: &identity.tenants[i..=i],
            }),
            Err(_) => Err(TenancyError::NotAllowed(t.to_string())),
        },
        None if identity.tenants.len() == 1 || op == Operation::Read => Ok(Scope {
            tenants: &identity.tenants,
        }),
        None => Err(TenancyError::Ambiguous {
            header: header_name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;
    use crate::config::Access;

    fn id(tenants: &[&str], read: bool, write: bool) -> Identity {
        let mut tenants: Vec<String> = tenants.iter().map(|s| s.to_string()).collect();
        tenants.sort();
        Identity {
            name: "u".into(),
            tenants,
            access: Access { read, write },
            method: AuthMethod::Basic,
            write_routing: Default::default(),
        }
    }

    const H: &str = "THANOS-TENANT";

    #[test]
    fn single_tenant_is_the_default_for_reads_and_writes() {
        let i = id(&["a"], true, true);
        for op in [Operation::Read, Operation::Write] {
            let s = resolve(&i, None, None, H, op).unwrap();
            assert_eq!(s.single(), Some("a"));
            assert_eq!(s.header_value(), "a");
        }
    }

    #[test]
    fn several_tenants_read_all_write_needs_a_name() {
        let i = id(&["b", "a"], true, true);
        let s = resolve(&i, None, None, H, Operation::Read).unwrap();
        assert_eq!(s.tenants(), &["a".to_string(), "b".to_string()]);
        assert_eq!(s.single(), None);
        assert_eq!(s.header_value(), "a|b");
        let e = resolve(&i, None, None, H, Operation::Write).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("THANOS-TENANT"));
        assert_eq!(
            resolve(&i, Some("b"), None, H, Operation::Write)
                .unwrap()
                .single(),
            Some("b")
        );
        assert_eq!(
            resolve(&i, None, Some("a"), H, Operation::Write)
                .unwrap()
                .single(),
            Some("a")
        );
        assert_eq!(
            resolve(&i, None, Some("a"), H, Operation::Read)
                .unwrap()
                .single(),
            Some("a")
        );
    }

    #[test]
    fn naming_a_foreign_tenant_is_forbidden() {
        let i = id(&["a"], true, true);
        for (p, h) in [
            (Some("b"), None),
            (None, Some("b")),
            (None, Some("")),
            (None, Some("a|b")),
        ] {
            let e = resolve(&i, p, h, H, Operation::Read).unwrap_err();
            assert_eq!(e.status(), 403, "{p:?} {h:?}");
        }
    }

    #[test]
    fn path_and_header_must_agree() {
        let i = id(&["a", "b"], true, true);
        assert_eq!(
            resolve(&i, Some("a"), Some("a"), H, Operation::Read)
                .unwrap()
                .single(),
            Some("a")
        );
        assert_eq!(
            resolve(&i, Some("a"), Some("b"), H, Operation::Read)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn missing_access_is_forbidden() {
        let w = id(&["a"], false, true);
        assert_eq!(
            resolve(&w, None, None, H, Operation::Read).unwrap_err(),
            TenancyError::MissingAccess("read")
        );
        let r = id(&["a"], true, false);
        assert_eq!(
            resolve(&r, None, None, H, Operation::Write)
                .unwrap_err()
                .status(),
            403
        );
        let none = id(&[], true, true);
        assert_eq!(
            resolve(&none, None, None, H, Operation::Read)
                .unwrap_err()
                .status(),
            403
        );
    }
}
