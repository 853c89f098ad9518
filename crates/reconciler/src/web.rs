//! `Gateway.spec.webConfig` (Whizard's exporter-toolkit web config) for `whizard gateway`:
//!
//! * `httpServerTLSConfig {certSecret, keySecret, clientCASecret}` → the gateway listens with
//!   HTTPS (and HTTP/2) on its port; the Secrets are mounted at
//!   `/etc/whizard/web/<secret>/<key>`; with a client CA, client certificates are verified when
//!   presented (`client_auth: optional`), so Basic-Auth clients keep working.
//! * `basicAuthUsers [{username, password}]` (Secret references; the password is already a
//!   bcrypt hash, as in Whizard) → gateway users with read and write access to every tenant of
//!   the Service (Whizard's users may name any tenant in the path).
//! * `httpServerConfig.http2` needs nothing: the HTTPS listener always offers HTTP/2.

use serde::Deserialize;
use serde_json::Value;

use super::crd::{SecretKeySelector, WebConfig};
use super::model::{PlanError, Secrets};

pub const WEB_DIR: &str = "/etc/whizard/web";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayWeb {
    pub tls: Option<WebTls>,
    pub users: Vec<WebUser>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebTls {
    pub cert_secret: SecretKeySelector,
    pub key_secret: SecretKeySelector,
    #[serde(default, rename = "clientCASecret")]
    pub client_ca_secret: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebUser {
    pub name: String,
    pub password_hash: String,
}

#[derive(Deserialize)]
struct RawUser {
    username: SecretKeySelector,
    password: SecretKeySelector,
}

/// Where a Secret key is mounted in the gateway pod.
pub fn file(sel: &SecretKeySelector) -> String {
    format!("{WEB_DIR}/{}/{}", sel.name, sel.key)
}

fn err(field: &str, reason: impl std::fmt::Display) -> PlanError {
    PlanError::WebConfig {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn users(web: &WebConfig, field: &str) -> Result<Vec<RawUser>, PlanError> {
    web.basic_auth_users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            serde_json::from_value(u.clone())
                .map_err(|e| err(&format!("{field}.basicAuthUsers[{i}]"), e))
        })
        .collect()
}

/// Names of the Secrets the basic-auth users refer to (read by the adapter).
pub fn secret_names(web: Option<&WebConfig>) -> Vec<String> {
    let Some(web) = web else { return Vec::new() };
    users(web, "").map_or_else(
        |_| Vec::new(),
        |us| {
            us.into_iter()
                .flat_map(|u| [u.username.name, u.password.name])
                .collect()
        },
    )
}

/// The web settings of one gateway; `field` names the webConfig in errors.
pub fn resolve(
    web: Option<&WebConfig>,
    secrets: &Secrets,
    field: &str,
) -> Result<GatewayWeb, PlanError> {
    let Some(web) = web else {
        return Ok(GatewayWeb::default());
    };
    let tls = match &web.http_server_tls_config {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<WebTls>(v.clone())
                .map_err(|e| err(&format!("{field}.httpServerTLSConfig"), e))?,
        ),
    };
    let mut out = Vec::new();
    for (i, u) in users(web, field)?.into_iter().enumerate() {
        let f = format!("{field}.basicAuthUsers[{i}]");
        let get = |sel: &SecretKeySelector, what: &str| {
            secrets
                .get(&sel.name)
                .and_then(|s| s.get(&sel.key))
                .cloned()
                .ok_or_else(|| PlanError::MissingSecret {
                    field: format!("{f}.{what}"),
                    secret: sel.name.clone(),
                    key: sel.key.clone(),
                })
        };
        let name = get(&u.username, "username")?.trim().to_string();
        let hash = get(&u.password, "password")?.trim().to_string();
        // Checked here: a hash the gateway rejects would make it refuse the whole config.
        if name.is_empty() {
            return Err(err(&f, "empty username"));
        }
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) || hash.len() != 60 {
            return Err(err(
                &f,
                "the password must be a bcrypt hash ($2a$/$2b$/$2y$)",
            ));
        }
        if out.iter().any(|x: &WebUser| x.name == name) {
            return Err(err(&f, format!("user {name:?} declared twice")));
        }
        out.push(WebUser {
            name,
            password_hash: hash,
        });
    }
    Ok(GatewayWeb { tls, users: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "$2y$10$abcdefghijklmnopqrstuuCmWqgb7JQVnrHwGLK4Q0eIZ4YbYbIQO";

    fn secrets() -> Secrets {
        [(
            "users".to_string(),
            [
                ("u".to_string(), "ops".to_string()),
                ("p".to_string(), HASH.to_string()),
                ("plain".to_string(), "hunter2".to_string()),
            ]
            .into(),
        )]
        .into()
    }

    fn web(v: Value) -> WebConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tls_and_users() {
        let w = web(json!({
            "httpServerTLSConfig": {"certSecret": {"name": "gw-tls", "key": "tls.crt"},
                                    "keySecret": {"name": "gw-tls", "key": "tls.key"},
                                    "clientCASecret": {"name": "ca", "key": "ca.crt"}},
            "basicAuthUsers": [{"username": {"name": "users", "key": "u"},
                                "password": {"name": "users", "key": "p"}}]
        }));
        let r = resolve(Some(&w), &secrets(), "gateway").unwrap();
        let tls = r.tls.unwrap();
        assert_eq!(file(&tls.cert_secret), "/etc/whizard/web/gw-tls/tls.crt");
        assert_eq!(
            file(tls.client_ca_secret.as_ref().unwrap()),
            "/etc/whizard/web/ca/ca.crt"
        );
        assert_eq!(
            r.users,
            vec![WebUser {
                name: "ops".into(),
                password_hash: HASH.into()
            }]
        );
        assert_eq!(secret_names(Some(&w)), vec!["users", "users"]);
        assert_eq!(
            resolve(None, &secrets(), "g").unwrap(),
            GatewayWeb::default()
        );
    }

    #[test]
    fn plain_passwords_missing_secrets_and_bad_shapes_are_errors() {
        let user = |p: &str| {
            web(
                json!({"basicAuthUsers": [{"username": {"name": "users", "key": "u"},
                                           "password": {"name": "users", "key": p}}]}),
            )
        };
        assert!(matches!(
            resolve(Some(&user("plain")), &secrets(), "g"),
            Err(PlanError::WebConfig { .. })
        ));
        assert!(matches!(
            resolve(Some(&user("nope")), &secrets(), "g"),
            Err(PlanError::MissingSecret { .. })
        ));
        let bad = web(json!({"httpServerTLSConfig": {"certSecret": "x"}}));
        assert!(resolve(Some(&bad), &secrets(), "g").is_err());
    }
}
