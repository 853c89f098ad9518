//! Browser login: the authorization code flow (PKCE S256, `state`, `nonce`) against the first
//! `oidc` provider with a `client_id`, and the use of the session it starts on every request.
//!
//! Gateway glue: `GET /oauth2/login?rd=/graph` → [`LoginFlow::start`] → 302 to the provider
//! with the flow cookie; `GET /oauth2/callback?...` → [`LoginFlow::callback`] → 302 to the
//! return path with the session cookie; every request with a session cookie →
//! [`LoginFlow::session`]; `/oauth2/logout` → [`LoginFlow::logout`].
//!
//! A session holds who the user is; tenants and access are derived from its claims under the
//! current config on every request, so a reload that changes `group_tenants` or removes the
//! provider applies to live sessions at once. Every `ui.session_renew_seconds` the session is
//! renewed at the provider with its refresh token (new claims, new cookie); a provider that
//! refuses (the user logged out, was disabled, the grant was revoked) ends it. Logout revokes the
//! refresh token, so a copy of the cookie stops working on every replica, and after a restart,
//! at its next renewal. Access of a browser session comes from the ID token's `access_claim`
//! when present, else it is read-only: the UI is for readers.

use super::oidc::{identity_from_claims, Claims, Discovery, Issuer};
use super::session::{
    cookie_values, kept_claims, random_token, set_cookie, unix_now, CookieError, FlowData,
    SessionData, Sessions, FLOW_COOKIE, SESSION_COOKIE,
};
use super::{AuthError, AuthMethod, Identity};
use crate::config::Access;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

const MAX_RETURN_PATH: usize = 2048;
/// Calls to the token and revocation endpoints.
const PROVIDER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The access of a browser session whose ID token has no `access_claim`.
const READ_ONLY: Access = Access {
    read: true,
    write: false,
};

/// The local path a login may return to: `rd` when it is a path on this site, else `/`.
/// Refuses anything a browser could read as another origin: `//host`, `/\host`, schemes,
/// control characters or whitespace (browsers drop tabs/newlines: `/\t/host` is `//host`).
pub fn safe_return_path(rd: Option<&str>) -> String {
    rd.and_then(local_path).unwrap_or_else(|| "/".to_string())
}

fn local_path(rd: &str) -> Option<String> {
    if rd.is_empty()
        || rd.len() > MAX_RETURN_PATH
        || !rd.starts_with('/')
        || rd.starts_with("//")
        || rd.contains('\\')
        || rd.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    let base = url::Url::parse("http://whizard.invalid/").ok()?;
    let joined = base.join(rd).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    let mut out = joined.path().to_string();
    if out.starts_with("//") {
        return None;
    }
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = joined.fragment() {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// PKCE S256: the `code_challenge` of a `code_verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Why a login did not complete. [`LoginError::status`] is the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("browser login is not configured: {0}")]
    NotConfigured(&'static str),
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    #[error("login failed: {0}")]
    BadRequest(&'static str),
    #[error("identity provider refused the login: {0}")]
    Denied(String),
    #[error("ID token refused: {0}")]
    InvalidIdToken(AuthError),
    #[error("this account has no tenant")]
    NoTenants,
    #[error("session too large for a cookie (too many groups?)")]
    SessionTooLarge,
}

impl LoginError {
    pub fn status(&self) -> u16 {
        match self {
            LoginError::NotConfigured(_) => 404,
            LoginError::Unavailable(_) => 503,
            LoginError::BadRequest(_) => 400,
            LoginError::Denied(_) | LoginError::NoTenants => 403,
            LoginError::InvalidIdToken(AuthError::Unavailable) => 503,
            LoginError::InvalidIdToken(_) => 401,
            // Input from the provider, not our fault: never a 500.
            LoginError::SessionTooLarge => 403,
        }
    }
}

/// What the gateway answers: a redirect, with cookies to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `Location` (302).
    pub location: String,
    /// `Set-Cookie` headers, one each.
    pub set_cookies: Vec<String>,
}

/// The session of a request: who it is, under the current config, and the cookie to send
/// back when the session was renewed on the way.
#[derive(Debug, Clone)]
pub struct SessionUse {
    pub identity: Identity,
    pub set_cookie: Option<String>,
}

/// The login flow of the provider used for browsers, and the sessions it starts.
pub struct LoginFlow {
    issuer: Arc<Issuer>,
    sessions: Arc<Sessions>,
    http: reqwest::Client,
    client_id: String,
    client_secret: Option<String>,
    redirect_url: String,
    /// `Path` of the flow cookie: the directory of `redirect_url`.
    flow_path: String,
    scopes: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    refresh_token: Option<String>,
}

impl LoginFlow {
    /// The flow for `issuer`, which needs `client_id` and `redirect_url`.
    pub fn new(
        issuer: Arc<Issuer>,
        sessions: Arc<Sessions>,
        http: reqwest::Client,
    ) -> Result<LoginFlow, LoginError> {
        let config = issuer.config();
        let client_id = config
            .client_id
            .clone()
            .ok_or(LoginError::NotConfigured("oidc client_id is not set"))?;
        let redirect_url = config
            .redirect_url
            .clone()
            .ok_or(LoginError::NotConfigured("oidc redirect_url is not set"))?;
        let parsed = url::Url::parse(&redirect_url)
            .map_err(|_| LoginError::NotConfigured("oidc redirect_url is not a URL"))?;
        let flow_path = match parsed.path().rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((dir, _)) => dir.to_string(),
        };
        Ok(LoginFlow {
            client_secret: config.client_secret.clone(),
            issuer,
            sessions,
            http,
            client_id,
            redirect_url,
            flow_path,
            scopes: "openid profile email".to_string(),
        })
    }

    /// Scopes requested at the provider (default `openid profile email`).
    pub fn with_scopes(mut self, scopes: &str) -> LoginFlow {
        self.scopes = scopes.to_string();
        self
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The `Set-Cookie` value removing the login-flow cookie.
    pub fn clear_flow_cookie(&self, secure: bool) -> String {
        set_cookie(FLOW_COOKIE, "", &self.flow_path, 0, secure)
    }

    /// `GET /oauth2/login?rd=<path>`: the redirect to the provider's authorization endpoint,
    /// with the flow cookie. `query` is the raw query string of the request.
    pub async fn start(&self, query: Option<&str>, secure: bool) -> Result<Redirect, LoginError> {
        let rd = query.and_then(|q| query_param(q, "rd"));
        let return_to = safe_return_path(rd.as_deref());
        let discovery = self.discovery().await?;
        let endpoint =
            discovery
                .authorization_endpoint
                .as_deref()
                .ok_or(LoginError::Unavailable(
                    "provider has no authorization_endpoint".into(),
                ))?;
        let flow = FlowData {
            v: random_token(),
            state: random_token(),
            nonce: random_token(),
            r: return_to,
            e: unix_now() + self.sessions.options().flow_ttl.as_secs(),
        };
        let mut url = url::Url::parse(endpoint)
            .map_err(|_| LoginError::Unavailable("bad authorization_endpoint".into()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", &self.scopes)
            .append_pair("state", &flow.state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &pkce_challenge(&flow.v))
            .append_pair("code_challenge_method", "S256");
        let cookie = set_cookie(
            FLOW_COOKIE,
            &self.sessions.seal_flow(&flow),
            &self.flow_path,
            self.sessions.options().flow_ttl.as_secs(),
            secure,
        );
        Ok(Redirect {
            location: url.into(),
            set_cookies: vec![cookie],
        })
    }

    /// `GET /oauth2/callback?code=..&state=..`: checks `state` against the flow cookie, exchanges
    /// the code (with the PKCE verifier) for an ID token, verifies it (signature, issuer,
    /// audience = `client_id`, expiry, `nonce`), and redirects to the return path with the
    /// session cookie. On error, the caller answers [`LoginError::status`] and clears the flow
    /// cookie ([`LoginFlow::clear_flow_cookie`]).
    pub async fn callback(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> Result<Redirect, LoginError> {
        let (session, return_to) = self.complete(query, headers).await?;
        let cookie = self
            .sessions
            .set_cookie(&session, secure)
            .map_err(|_| LoginError::SessionTooLarge)?;
        Ok(Redirect {
            location: return_to,
            set_cookies: vec![cookie, self.clear_flow_cookie(secure)],
        })
    }

    /// The work of [`LoginFlow::callback`]: the new session and the return path.
    pub async fn complete(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<(SessionData, String), LoginError> {
        let query = query.unwrap_or("");
        if let Some(error) = query_param(query, "error") {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(100)
                .collect();
            return Err(LoginError::Denied(error));
        }
        let code = query_param(query, "code").ok_or(LoginError::BadRequest("no code"))?;
        let state = query_param(query, "state").ok_or(LoginError::BadRequest("no state"))?;
        let flow = cookie_values(headers, FLOW_COOKIE)
            .into_iter()
            .filter_map(|v| self.sessions.open_flow(v))
            .find(|f| bool::from(f.state.as_bytes().ct_eq(state.as_bytes())))
            .ok_or(LoginError::BadRequest(
                "login expired or state mismatch; start again",
            ))?;
        let tokens = self
            .token_call(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &self.redirect_url),
                ("code_verifier", &flow.v),
            ])
            .await?;
        let id_token = tokens.id_token.ok_or(LoginError::Unavailable(
            "token endpoint returned no id_token".into(),
        ))?;
        let claims = self
            .issuer
            .verify(&id_token, &self.client_id)
            .await
            .map_err(LoginError::InvalidIdToken)?;
        check_id_token(&claims, &self.client_id, &flow.nonce)?;
        if self.identity(&claims).tenants.is_empty() {
            return Err(LoginError::NoTenants);
        }
        let session = self.sessions.start(
            self.issuer.issuer(),
            kept_claims(self.issuer.config(), &claims),
            tokens.refresh_token,
        );
        Ok((session, flow.r))
    }

    /// The identity of session claims under this config.
    fn identity(&self, claims: &Claims) -> Identity {
        identity_from_claims(self.issuer.config(), claims, AuthMethod::Session, READ_ONLY)
    }

    /// The session of a request's `whizard_session` cookie (`None`: there is none), renewed at
    /// the provider when due. Several cookies of that name (e.g. a stale one) are tried in turn.
    pub async fn session(
        &self,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> Option<Result<SessionUse, AuthError>> {
        let mut error = None;
        for value in cookie_values(headers, SESSION_COOKIE) {
            if value.is_empty() {
                continue;
            }
            match self.sessions.open(value) {
                Ok(data) => return Some(self.use_session(data, secure).await),
                Err(e) => error = Some(cookie_error(e)),
            }
        }
        error.map(Err)
    }

    async fn use_session(&self, data: SessionData, secure: bool) -> Result<SessionUse, AuthError> {
        if !self.issuer.matches(&data.issuer) {
            // The provider it was made by left the config (or another one is used for login).
            return Err(AuthError::InvalidSession(
                "the provider of this session is no longer configured",
            ));
        }
        if data.renew_at > unix_now() {
            return Ok(SessionUse {
                identity: self.identity(&data.claims),
                set_cookie: None,
            });
        }
        let renewed = self.renew(data).await?;
        let set_cookie = self
            .sessions
            .set_cookie(&renewed, secure)
            .map_err(cookie_error)?;
        Ok(SessionUse {
            identity: self.identity(&renewed.claims),
            set_cookie: Some(set_cookie),
        })
    }

    /// The session renewed at the provider: once per session and interval, whatever the
    /// number of requests that find it due (they share the renewal).
    async fn renew(&self, data: SessionData) -> Result<SessionData, AuthError> {
        let Some(refresh_token) = data.refresh_token.clone() else {
            return Err(AuthError::InvalidSession(
                "session expired (the provider gave no refresh token); log in again",
            ));
        };
        let mut slot = self.sessions.renewal(&data.id);
        if slot.get().is_some_and(|r| r.renew_at <= unix_now()) {
            self.sessions.forget_renewal(&data.id);
            slot = self.sessions.renewal(&data.id);
        }
        let renewed = slot
            .get_or_try_init(|| self.refresh(&data, &refresh_token))
            .await
            .cloned();
        if let Err(AuthError::InvalidSession(_)) = &renewed {
            // The provider refused: ended everywhere this process sees it, without asking again.
            self.sessions.end(&data.id);
        }
        renewed
    }

    /// One `refresh_token` grant: new claims (from a new ID token, for the same subject), the
    /// next renewal time, and the new refresh token when the provider rotates it.
    async fn refresh(
        &self,
        data: &SessionData,
        refresh_token: &str,
    ) -> Result<SessionData, AuthError> {
        let tokens = self
            .token_call(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await
            .map_err(|e| match e {
                LoginError::Denied(_) => {
                    AuthError::InvalidSession("the identity provider ended the session")
                }
                _ => AuthError::Unavailable,
            })?;
        let claims = match tokens.id_token {
            Some(id_token) => {
                let claims = self
                    .issuer
                    .verify(&id_token, &self.client_id)
                    .await
                    .map_err(|e| match e {
                        AuthError::Unavailable => AuthError::Unavailable,
                        _ => AuthError::InvalidSession("the renewed ID token was refused"),
                    })?;
                // OIDC Core §12.2: same subject; and `azp` as at login.
                if claims.get("sub") != data.claims.get("sub")
                    || check_azp(&claims, &self.client_id).is_err()
                {
                    return Err(AuthError::InvalidSession(
                        "the renewed ID token is for another user or client",
                    ));
                }
                kept_claims(self.issuer.config(), &claims)
            }
            None => data.claims.clone(),
        };
        Ok(SessionData {
            claims,
            renew_at: unix_now() + self.sessions.options().renew.as_secs(),
            refresh_token: tokens.refresh_token.or_else(|| data.refresh_token.clone()),
            ..data.clone()
        })
    }

    /// `/oauth2/logout`: ends the request's sessions here, revokes their refresh tokens at the
    /// provider (so no replica can renew them), and returns the `Set-Cookie` value clearing
    /// the cookie.
    pub async fn logout(&self, headers: &http::HeaderMap, secure: bool) -> String {
        for value in cookie_values(headers, SESSION_COOKIE) {
            let Ok(data) = self.sessions.open(value) else {
                continue;
            };
            // A renewal may have rotated the refresh token: revoke the newest one too.
            let renewed = self
                .sessions
                .renewal(&data.id)
                .get()
                .and_then(|r| r.refresh_token.clone());
            self.sessions.end(&data.id);
            let mut tokens: Vec<String> = data.refresh_token.into_iter().collect();
            tokens.extend(renewed.filter(|r| !tokens.contains(r)));
            for token in tokens {
                if let Err(e) = self.revoke(&token).await {
                    tracing::warn!(issuer = %self.issuer.issuer(), error = %e, "logout: the refresh token was not revoked; a copy of the session cookie keeps working on other replicas until it expires");
                }
            }
        }
        Sessions::clear_cookie(secure)
    }

    /// RFC 7009 revocation of a refresh token.
    async fn revoke(&self, token: &str) -> Result<(), LoginError> {
        let discovery = self.discovery().await?;
        let endpoint = discovery
            .revocation_endpoint
            .as_deref()
            .ok_or(LoginError::Unavailable(
                "provider has no revocation_endpoint".into(),
            ))?;
        let (status, _) = self
            .post_form(
                endpoint,
                &discovery,
                &[("token", token), ("token_type_hint", "refresh_token")],
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(LoginError::Unavailable(format!(
                "revocation endpoint answered {status}"
            )))
        }
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, LoginError> {
        self.issuer
            .discovery()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))
    }

    /// A call to the token endpoint: provider errors (4xx) are [`LoginError::Denied`] with the
    /// provider's `error` code, outages and 5xx [`LoginError::Unavailable`].
    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenResponse, LoginError> {
        let discovery = self.discovery().await?;
        let endpoint = discovery
            .token_endpoint
            .as_deref()
            .ok_or(LoginError::Unavailable(
                "provider has no token_endpoint".into(),
            ))?;
        let (status, body) = self.post_form(endpoint, &discovery, form).await?;
        if status.is_server_error() {
            return Err(LoginError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            // e.g. invalid_grant: code reused or expired, verifier mismatch, token revoked.
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| status.to_string());
            let error: String = error
                .chars()
                .filter(char::is_ascii_graphic)
                .take(100)
                .collect();
            return Err(LoginError::Denied(error));
        }
        serde_json::from_slice(&body)
            .map_err(|_| LoginError::Unavailable("token endpoint answered no JSON".into()))
    }

    /// POSTs a form to one of the provider's endpoints with this client's authentication
    /// (`client_secret_basic`, or `_post` when that is all the provider supports).
    async fn post_form(
        &self,
        endpoint: &str,
        discovery: &Discovery,
        form: &[(&str, &str)],
    ) -> Result<(http::StatusCode, bytes::Bytes), LoginError> {
        let post_secret = discovery
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                !m.iter().any(|m| m == "client_secret_basic")
                    && m.iter().any(|m| m == "client_secret_post")
            });
        // Built in a block: the serializer is not Send and must not live across an await.
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(form);
            match &self.client_secret {
                Some(secret) if post_secret => {
                    body.append_pair("client_id", &self.client_id)
                        .append_pair("client_secret", secret);
                }
                Some(_) => {}
                None => {
                    body.append_pair("client_id", &self.client_id);
                }
            }
            body.finish()
        };
        let mut request = self
            .http
            .post(endpoint)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(PROVIDER_CALL_TIMEOUT);
        if let (Some(secret), false) = (&self.client_secret, post_secret) {
            // RFC 6749 §2.3.1: form-encode both before Basic encoding.
            let user: String = form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
            let pass: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request = request.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let name = endpoint.split('?').next().unwrap_or(endpoint).to_string();
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(format!("{name}: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| LoginError::Unavailable(format!("{name}: {e}")))?;
        Ok((status, body))
    }
}

fn cookie_error(e: CookieError) -> AuthError {
    AuthError::InvalidSession(match e {
        CookieError::Invalid => "invalid session cookie",
        CookieError::Expired => "session expired",
        CookieError::Ended => "session ended",
        CookieError::TooLarge => "session too large for a cookie",
    })
}

/// ID-token checks beyond signature/iss/aud/exp: `nonce` equals ours, and [`check_azp`].
fn check_id_token(claims: &Claims, client_id: &str, nonce: &str) -> Result<(), LoginError> {
    let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
        return Err(LoginError::InvalidIdToken(AuthError::InvalidToken(
            "nonce mismatch",
        )));
    }
    check_azp(claims, client_id)
}

/// With several audiences `azp` names us; when present it always does (OIDC Core §3.1.3.7).
fn check_azp(claims: &Claims, client_id: &str) -> Result<(), LoginError> {
    let several = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => Err(LoginError::InvalidIdToken(AuthError::InvalidToken(
            "azp mismatch",
        ))),
        None if several => Err(LoginError::InvalidIdToken(AuthError::InvalidToken(
            "azp missing",
        ))),
        _ => Ok(()),
    }
}

/// First value of `name` in a raw query string, decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_token();
        assert_eq!(v.len(), 43); // RFC 7636: 43..128 characters
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn return_paths_stay_local() {
        for (rd, want) in [
            ("/graph?g0.expr=up&x=1", "/graph?g0.expr=up&x=1"),
            ("/", "/"),
            ("/a/../b", "/b"),
            ("/..//evil.example", "/"),
            ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
            ("/a#frag", "/a#frag"),
        ] {
            let got = safe_return_path(Some(rd));
            assert!(
                got == want || (want == "/" && got.starts_with('/')),
                "{rd} → {got}"
            );
            assert!(!got.starts_with("//"), "{rd} → {got}");
        }
        for rd in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " /x",
            "",
        ] {
            assert_eq!(safe_return_path(Some(rd)), "/", "{rd:?}");
        }
        assert_eq!(safe_return_path(None), "/");
        assert_eq!(
            safe_return_path(Some(&format!("/{}", "a".repeat(3000)))),
            "/"
        );
    }

    #[test]
    fn id_token_nonce_and_azp() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert!(check_id_token(&c(json!({"nonce": "n1", "aud": "ui"})), "ui", "n1").is_ok());
        assert!(check_id_token(&c(json!({"nonce": "n2", "aud": "ui"})), "ui", "n1").is_err());
        assert!(check_id_token(&c(json!({"aud": "ui"})), "ui", "n1").is_err());
        assert!(
            check_id_token(&c(json!({"nonce": "n1", "aud": ["ui", "x"]})), "ui", "n1").is_err()
        );
        assert!(check_id_token(
            &c(json!({"nonce": "n1", "aud": ["ui", "x"], "azp": "ui"})),
            "ui",
            "n1"
        )
        .is_ok());
        assert!(check_id_token(
            &c(json!({"nonce": "n1", "aud": "ui", "azp": "x"})),
            "ui",
            "n1"
        )
        .is_err());
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("rd=%2Fgraph%3Fa%3D1&x=2", "rd").unwrap(),
            "/graph?a=1"
        );
        assert!(query_param("x=2", "rd").is_none());
    }
}
