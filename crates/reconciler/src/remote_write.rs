//! `Service.spec.remoteWrites[]` → the gateway's remote-write fan-out targets
//! (`upstreams.remote_writes` in the `whizard gateway` config).
//!
//! The gateway sends each copy with static `headers` and a `timeout_seconds`; it has no
//! separate basic-auth or bearer-token settings, so both become an `Authorization` header:
//! `bearerToken` → `Bearer <token>`, `basicAuth` → `Basic base64(user:password)` with the user
//! and password read from Secrets of the Service's namespace (the gateway config is itself a
//! Secret, so the credentials stay in Secrets). `remoteTimeout` → `timeout_seconds`.

use std::collections::BTreeMap;

use base64::Engine;

use super::crd::{RemoteWriteSpec, SecretKeySelector};
use super::model::{PlanError, Secrets};
use super::naming::parse_duration;

/// One fan-out target as the gateway config names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub timeout_seconds: Option<u64>,
}

fn secret_value(
    secrets: &Secrets,
    sel: &SecretKeySelector,
    field: &str,
) -> Result<String, PlanError> {
    match secrets.get(&sel.name).and_then(|s| s.get(&sel.key)) {
        Some(v) => Ok(v.clone()),
        None if sel.optional == Some(true) => Ok(String::new()),
        None => Err(PlanError::MissingSecret {
            field: field.to_string(),
            secret: sel.name.clone(),
            key: sel.key.clone(),
        }),
    }
}

/// The targets of `specs`, in order (unnamed ones become `remote-write-<i>`).
pub fn targets(specs: &[RemoteWriteSpec], secrets: &Secrets) -> Result<Vec<Target>, PlanError> {
    let mut out = Vec::new();
    for (i, rw) in specs.iter().enumerate() {
        let field = format!("remoteWrites[{i}]");
        let invalid = |reason: &str| PlanError::RemoteWrite {
            field: field.clone(),
            reason: reason.to_string(),
        };
        let name = if rw.name.is_empty() {
            format!("remote-write-{i}")
        } else {
            rw.name.clone()
        };
        let mut headers = rw.headers.clone();
        let has_auth_header = headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"));
        let basic = rw
            .basic_auth
            .as_ref()
            .filter(|b| b.username.is_some() || b.password.is_some());
        let auth = match (basic, rw.bearer_token.is_empty()) {
            (Some(_), false) => return Err(invalid("basicAuth and bearerToken are exclusive")),
            (None, false) => Some(format!("Bearer {}", rw.bearer_token)),
            (Some(b), true) => {
                let get = |sel: &Option<SecretKeySelector>, f: &str| match sel {
                    Some(s) => secret_value(secrets, s, &format!("{field}.basicAuth.{f}")),
                    None => Ok(String::new()),
                };
                let user = get(&b.username, "username")?;
                let password = get(&b.password, "password")?;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
            (None, true) => None,
        };
        if let Some(a) = auth {
            if has_auth_header {
                return Err(invalid(
                    "an Authorization header cannot be combined with basicAuth or bearerToken",
                ));
            }
            headers.insert("Authorization".into(), a);
        }
        let timeout_seconds = if rw.remote_timeout.is_empty() {
            None
        } else {
            match parse_duration(&rw.remote_timeout) {
                Some(s) if s > 0 => Some(s),
                _ => {
                    return Err(PlanError::Duration {
                        field: format!("{field}.remoteTimeout"),
                        value: rw.remote_timeout.clone(),
                    })
                }
            }
        };
        out.push(Target {
            name,
            url: rw.url.clone(),
            headers,
            timeout_seconds,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::BasicAuth;

    fn sel(name: &str, key: &str) -> Option<SecretKeySelector> {
        Some(SecretKeySelector {
            name: name.into(),
            key: key.into(),
            optional: None,
        })
    }

    fn secrets() -> Secrets {
        [(
            "rw".to_string(),
            [
                ("user".to_string(), "alice".to_string()),
                ("pass".to_string(), "s3cret".to_string()),
            ]
            .into(),
        )]
        .into()
    }

    #[test]
    fn headers_bearer_basic_and_timeout() {
        let specs = vec![
            RemoteWriteSpec {
                url: "https://a/api/v1/write".into(),
                headers: [("X-Scope-OrgID".to_string(), "central".to_string())].into(),
                bearer_token: "tok".into(),
                remote_timeout: "10s".into(),
                ..Default::default()
            },
            RemoteWriteSpec {
                name: "backup".into(),
                url: "https://b/api/v1/write".into(),
                basic_auth: Some(BasicAuth {
                    username: sel("rw", "user"),
                    password: sel("rw", "pass"),
                }),
                ..Default::default()
            },
        ];
        let t = targets(&specs, &secrets()).unwrap();
        assert_eq!(t[0].name, "remote-write-0");
        assert_eq!(t[0].headers["X-Scope-OrgID"], "central");
        assert_eq!(t[0].headers["Authorization"], "Bearer tok");
        assert_eq!(t[0].timeout_seconds, Some(10));
        // base64("alice:s3cret")
        assert_eq!(t[1].headers["Authorization"], "Basic YWxpY2U6czNjcmV0");
        assert_eq!(t[1].timeout_seconds, None);
    }

    #[test]
    fn conflicts_and_missing_secrets_are_errors() {
        let both = RemoteWriteSpec {
            url: "u".into(),
            bearer_token: "t".into(),
            basic_auth: Some(BasicAuth {
                username: sel("rw", "user"),
                password: None,
            }),
            ..Default::default()
        };
        assert!(matches!(
            targets(&[both], &secrets()),
            Err(PlanError::RemoteWrite { .. })
        ));
        let header_and_token = RemoteWriteSpec {
            url: "u".into(),
            bearer_token: "t".into(),
            headers: [("authorization".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        assert!(targets(&[header_and_token], &secrets()).is_err());
        let missing = RemoteWriteSpec {
            url: "u".into(),
            basic_auth: Some(BasicAuth {
                username: sel("nope", "user"),
                password: sel("rw", "pass"),
            }),
            ..Default::default()
        };
        assert!(matches!(
            targets(&[missing], &secrets()),
            Err(PlanError::MissingSecret { .. })
        ));
        let mut optional = sel("nope", "user").unwrap();
        optional.optional = Some(true);
        let opt = RemoteWriteSpec {
            url: "u".into(),
            basic_auth: Some(BasicAuth {
                username: Some(optional),
                password: sel("rw", "pass"),
            }),
            ..Default::default()
        };
        assert!(targets(&[opt], &secrets()).is_ok());
        let bad_timeout = RemoteWriteSpec {
            url: "u".into(),
            remote_timeout: "100ms".into(),
            ..Default::default()
        };
        assert!(matches!(
            targets(&[bad_timeout], &secrets()),
            Err(PlanError::Duration { .. })
        ));
    }
}
