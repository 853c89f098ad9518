//! Browser login: the authorization code flow (PKCE S256, `state`, `nonce`) against the first
//! `oidc` provider with a `client_id`, and the session cookie that follows it.
//!
//! Both cookies are sealed with XChaCha20-Poly1305 (encrypted and authenticated) under keys
//! derived from `ui.cookie_secret` with BLAKE3 `derive_key`, one key per purpose, so a login-flow
//! cookie can never pass for a session and vice versa. Nothing is stored server-side except the
//! ids of sessions ended by logout (per process, until they would have expired anyway).
//!
//! - `whizard_session`: user name, tenants, access, issue and expiry time, a random session id.
//!   `Path=/; HttpOnly; SameSite=Lax`, `Secure` on HTTPS, `Max-Age` = [`SessionOptions::ttl`].
//! - `whizard_login`: the PKCE verifier, `state`, `nonce` and return path of one login in
//!   progress; `Path` = the directory of `redirect_url` (e.g. `/oauth2`), 10 minutes.
//!
//! Gateway glue (see the report / README): `GET /oauth2/login?rd=/graph` →
//! [`LoginFlow::start`] → 302 to the provider with the flow cookie; `GET /oauth2/callback?...` →
//! [`LoginFlow::callback`] → 302 to the return path with the session cookie;
//! `/oauth2/logout` → [`Sessions::logout`] → a "logged out" page with the cookie cleared.
//!
//! Access of a browser session comes from the ID token's `access_claim` when present, else it is
//! read-only: the UI is for readers.

use super::oidc::{identity_from_claims, Claims, Issuer};
use super::{AuthError, AuthMethod, AuthOutcome, Authenticator, Identity};
use crate::config::{Access, Ui};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "whizard_session";
pub const FLOW_COOKIE: &str = "whizard_login";

/// Browsers keep cookies up to 4096 bytes (name, value and attributes).
const MAX_COOKIE_VALUE: usize = 3800;
const MAX_RETURN_PATH: usize = 2048;

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Lifetime of a session cookie.
    pub ttl: Duration,
    /// Time a user has to complete a login at the provider.
    pub flow_ttl: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: Duration::from_secs(8 * 3600),
            flow_ttl: Duration::from_secs(600),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// AEAD sealing for one purpose.
struct Sealer {
    cipher: XChaCha20Poly1305,
    purpose: &'static str,
}

impl Sealer {
    fn new(secret: &[u8], purpose: &'static str) -> Sealer {
        let key = blake3::derive_key(purpose, secret);
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.into()),
            purpose,
        }
    }

    fn seal(&self, plaintext: &[u8]) -> String {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: self.purpose.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    fn open(&self, value: &str) -> Option<Vec<u8>> {
        if value.len() > MAX_COOKIE_VALUE * 2 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
        if raw.len() < 24 + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: self.purpose.as_bytes(),
                },
            )
            .ok()
    }
}

/// Contents of a session cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SessionData {
    /// user name
    u: String,
    /// tenants
    t: Vec<String>,
    /// access: bit 0 read, bit 1 write
    a: u8,
    /// issued at, unix seconds
    i: u64,
    /// expires at, unix seconds
    e: u64,
    /// session id (for logout)
    s: String,
}

/// Contents of a login-flow cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct FlowData {
    /// PKCE code verifier
    v: String,
    state: String,
    nonce: String,
    /// return path
    r: String,
    /// expires at, unix seconds
    e: u64,
}

/// A `Set-Cookie` header value.
fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Values of every cookie called `name` in the request (there may be several).
pub fn cookie_values<'h>(headers: &'h http::HeaderMap, name: &str) -> Vec<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then_some(v.trim().trim_matches('"'))
        })
        .collect()
}

/// Session cookies: issuing, verifying, ending. Also the [`Authenticator`] for the `Cookie` header.
pub struct Sessions {
    session: Sealer,
    flow: Sealer,
    options: SessionOptions,
    /// Session ids ended by logout, until their cookies would have expired.
    ended: Cache<String, ()>,
}

impl Sessions {
    /// Sessions keyed by `ui.cookie_secret`; `None` when it is not set.
    pub fn new(ui: &Ui) -> Option<Sessions> {
        let secret = ui.cookie_secret.as_deref()?;
        Some(Self::from_secret(
            secret.as_bytes(),
            SessionOptions::default(),
        ))
    }

    pub fn from_secret(secret: &[u8], options: SessionOptions) -> Sessions {
        Sessions {
            session: Sealer::new(secret, "whizard 2025 session cookie v1"),
            flow: Sealer::new(secret, "whizard 2025 login flow cookie v1"),
            ended: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(options.ttl)
                .build(),
            options,
        }
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// The cookie value of a new session for `identity`.
    pub fn seal(&self, identity: &Identity) -> Result<String, LoginError> {
        let now = unix_now();
        let data = SessionData {
            u: identity.name.clone(),
            t: identity.tenants.clone(),
            a: u8::from(identity.access.read) | (u8::from(identity.access.write) << 1),
            i: now,
            e: now + self.options.ttl.as_secs(),
            s: random_token(),
        };
        let json = serde_json::to_vec(&data).map_err(|_| LoginError::SessionTooLarge)?;
        let value = self.session.seal(&json);
        if value.len() > MAX_COOKIE_VALUE {
            return Err(LoginError::SessionTooLarge);
        }
        Ok(value)
    }

    /// The `Set-Cookie` value starting a session for `identity`.
    pub fn set_cookie(&self, identity: &Identity, secure: bool) -> Result<String, LoginError> {
        let value = self.seal(identity)?;
        Ok(set_cookie(
            SESSION_COOKIE,
            &value,
            "/",
            self.options.ttl.as_secs(),
            secure,
        ))
    }

    /// The `Set-Cookie` value removing the session cookie.
    pub fn clear_cookie(secure: bool) -> String {
        set_cookie(SESSION_COOKIE, "", "/", 0, secure)
    }

    fn open(&self, value: &str) -> Result<SessionData, AuthError> {
        let plain = self
            .session
            .open(value)
            .ok_or(AuthError::InvalidSession("invalid session cookie"))?;
        let data: SessionData = serde_json::from_slice(&plain)
            .map_err(|_| AuthError::InvalidSession("invalid session cookie"))?;
        if data.e <= unix_now() {
            return Err(AuthError::InvalidSession("session expired"));
        }
        if self.ended.contains_key(&data.s) {
            return Err(AuthError::InvalidSession("session ended"));
        }
        Ok(data)
    }

    /// Verifies a session cookie value.
    pub fn verify(&self, value: &str) -> Result<Identity, AuthError> {
        let data = self.open(value)?;
        Ok(Identity {
            name: data.u,
            tenants: data.t,
            access: Access {
                read: data.a & 1 != 0,
                write: data.a & 2 != 0,
            },
            method: AuthMethod::Session,
        })
    }

    /// Ends the session of this request (if any) and returns the `Set-Cookie` value clearing it.
    /// The session id is remembered by this process until the cookie would have expired, so a
    /// copy of the cookie stops working here too.
    pub fn logout(&self, headers: &http::HeaderMap, secure: bool) -> String {
        for value in cookie_values(headers, SESSION_COOKIE) {
            if let Ok(data) = self.open(value) {
                self.ended.insert(data.s, ());
            }
        }
        Self::clear_cookie(secure)
    }

    fn seal_flow(&self, flow: &FlowData) -> String {
        self.flow
            .seal(&serde_json::to_vec(flow).unwrap_or_default())
    }

    fn open_flow(&self, value: &str) -> Option<FlowData> {
        let plain = self.flow.open(value)?;
        let flow: FlowData = serde_json::from_slice(&plain).ok()?;
        (flow.e > unix_now()).then_some(flow)
    }
}

#[async_trait]
impl Authenticator for Sessions {
    fn method(&self) -> AuthMethod {
        AuthMethod::Session
    }

    /// Not applicable without a `whizard_session` cookie; several cookies of that name (e.g. a
    /// stale one) are tried in turn.
    async fn authenticate(&self, headers: &http::HeaderMap) -> AuthOutcome {
        let values = cookie_values(headers, SESSION_COOKIE);
        let mut error = None;
        for value in values {
            if value.is_empty() {
                continue;
            }
            match self.verify(value) {
                Ok(identity) => return AuthOutcome::Authenticated(Arc::new(identity)),
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) => AuthOutcome::Failed(e),
            None => AuthOutcome::NotApplicable,
        }
    }
}

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
    #[error("session too large for a cookie (too many tenants?)")]
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

/// The login flow of the provider used for browsers.
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
        let discovery = self
            .issuer
            .discovery()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
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
            e: unix_now() + self.sessions.options.flow_ttl.as_secs(),
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
            self.sessions.options.flow_ttl.as_secs(),
            secure,
        );
        Ok(Redirect {
            location: url.into(),
            set_cookies: vec![cookie],
        })
    }

    /// `GET /oauth2/callback?code=..&state=..`: checks `state` against the flow cookie, exchanges
    /// the code (with the PKCE verifier), verifies the ID token (signature, `iss`,
    /// `aud` = client_id, `nonce`), and answers a redirect to the return path with the session
    /// cookie set and the flow cookie cleared. On error, answer `status()` and clear the flow
    /// cookie ([`LoginFlow::clear_flow_cookie`]).
    pub async fn callback(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
        secure: bool,
    ) -> Result<Redirect, LoginError> {
        let (identity, return_to) = self.complete(query, headers).await?;
        let session = self.sessions.set_cookie(&identity, secure)?;
        Ok(Redirect {
            location: return_to,
            set_cookies: vec![session, self.clear_flow_cookie(secure)],
        })
    }

    /// The work of [`LoginFlow::callback`]: the identity of the user and the return path.
    pub async fn complete(
        &self,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<(Identity, String), LoginError> {
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
        let id_token = self.exchange(&code, &flow.v).await?;
        let claims = self
            .issuer
            .verify(&id_token, &self.client_id)
            .await
            .map_err(LoginError::InvalidIdToken)?;
        check_id_token(&claims, &self.client_id, &flow.nonce)?;
        let identity = identity_from_claims(
            self.issuer.config(),
            &claims,
            AuthMethod::Session,
            Access {
                read: true,
                write: false,
            },
        );
        if identity.tenants.is_empty() {
            return Err(LoginError::NoTenants);
        }
        Ok((identity, flow.r))
    }

    /// Exchanges an authorization code at the token endpoint; returns the ID token.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, LoginError> {
        let discovery = self
            .issuer
            .discovery()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let endpoint = discovery
            .token_endpoint
            .as_deref()
            .ok_or(LoginError::Unavailable(
                "provider has no token_endpoint".into(),
            ))?;
        let post_secret = discovery
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                !m.iter().any(|m| m == "client_secret_basic")
                    && m.iter().any(|m| m == "client_secret_post")
            });
        // Built in a block: the serializer is not Send and must not live across an await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.redirect_url)
                .append_pair("code_verifier", verifier);
            match &self.client_secret {
                Some(secret) if post_secret => {
                    form.append_pair("client_id", &self.client_id)
                        .append_pair("client_secret", secret);
                }
                Some(_) => {}
                None => {
                    form.append_pair("client_id", &self.client_id);
                }
            }
            form.finish()
        };
        let mut request = self
            .http
            .post(endpoint)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(Duration::from_secs(10));
        if let (Some(secret), false) = (&self.client_secret, post_secret) {
            // RFC 6749 §2.3.1: form-encode both before Basic encoding.
            let user: String = form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
            let pass: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request = request.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| LoginError::Unavailable(format!("token endpoint: {e}")))?;
        if status.is_server_error() {
            return Err(LoginError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            // e.g. invalid_grant: code reused or expired, verifier mismatch.
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
        let tokens: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| LoginError::Unavailable("token endpoint answered no JSON".into()))?;
        tokens.id_token.ok_or(LoginError::Unavailable(
            "token endpoint returned no id_token".into(),
        ))
    }
}

/// ID-token checks beyond signature/iss/aud/exp: `nonce` equals ours, and with several
/// audiences `azp` names us (OIDC Core §3.1.3.7).
fn check_id_token(claims: &Claims, client_id: &str, nonce: &str) -> Result<(), LoginError> {
    let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
        return Err(LoginError::InvalidIdToken(AuthError::InvalidToken(
            "nonce mismatch",
        )));
    }
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

    fn sessions() -> Sessions {
        Sessions::from_secret(
            b"0123456789abcdef0123456789abcdef-test",
            SessionOptions::default(),
        )
    }

    fn identity() -> Identity {
        Identity {
            name: "alice".into(),
            tenants: vec!["team-a".into(), "team-b".into()],
            access: Access {
                read: true,
                write: false,
            },
            method: AuthMethod::Session,
        }
    }

    fn cookie_header(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("other=1; {SESSION_COOKIE}={value}; x=y")
                .parse()
                .unwrap(),
        );
        h
    }

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

    #[tokio::test]
    async fn cookie_round_trip_and_authenticator() {
        let s = sessions();
        let set = s.set_cookie(&identity(), true).unwrap();
        assert!(set.starts_with(&format!("{SESSION_COOKIE}=")));
        for attr in [
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Secure",
            "; Max-Age=28800",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!s.set_cookie(&identity(), false).unwrap().contains("Secure"));
        let value = set
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        // The content is encrypted: the user name does not show.
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"alice"));
        assert_eq!(s.verify(&value).unwrap(), identity());
        let AuthOutcome::Authenticated(id) = s.authenticate(&cookie_header(&value)).await else {
            panic!("expected a session");
        };
        assert_eq!(*id, identity());
        assert!(matches!(
            s.authenticate(&http::HeaderMap::new()).await,
            AuthOutcome::NotApplicable
        ));
        // Two cookies of the name: a stale one and a good one.
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            format!("{SESSION_COOKIE}=garbage").parse().unwrap(),
        );
        h.append(
            http::header::COOKIE,
            format!("{SESSION_COOKIE}={value}").parse().unwrap(),
        );
        assert!(matches!(
            s.authenticate(&h).await,
            AuthOutcome::Authenticated(_)
        ));
    }

    #[tokio::test]
    async fn tampered_foreign_and_expired_cookies_are_refused() {
        let s = sessions();
        let value = s.seal(&identity()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in [0, 24, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(
                s.verify(&tampered),
                Err(AuthError::InvalidSession("invalid session cookie"))
            );
            raw[i] ^= 1;
        }
        assert!(s.verify("").is_err());
        assert!(s.verify("!!!").is_err());
        assert!(s.verify(&"A".repeat(100)).is_err());
        // Another secret.
        let other = Sessions::from_secret(
            b"another secret of at least 32 bytes!!",
            SessionOptions::default(),
        );
        assert!(other.verify(&value).is_err());
        // A flow cookie is not a session (different key and AAD).
        let flow = s.seal_flow(&FlowData {
            v: "v".into(),
            state: "s".into(),
            nonce: "n".into(),
            r: "/".into(),
            e: unix_now() + 60,
        });
        assert!(s.verify(&flow).is_err());
        assert!(s.open_flow(&value).is_none());
        // Expired: sealed with the right key, but past its expiry.
        let old = SessionData {
            u: "alice".into(),
            t: vec!["team-a".into()],
            a: 1,
            i: unix_now() - 100,
            e: unix_now() - 1,
            s: "sid".into(),
        };
        let expired = s.session.seal(&serde_json::to_vec(&old).unwrap());
        assert_eq!(
            s.verify(&expired),
            Err(AuthError::InvalidSession("session expired"))
        );
        assert!(matches!(
            s.authenticate(&cookie_header(&expired)).await,
            AuthOutcome::Failed(AuthError::InvalidSession(_))
        ));
        // Expired flow cookie.
        let flow = s.seal_flow(&FlowData {
            v: "v".into(),
            state: "s".into(),
            nonce: "n".into(),
            r: "/".into(),
            e: unix_now() - 1,
        });
        assert!(s.open_flow(&flow).is_none());
    }

    #[test]
    fn logout_clears_and_ends_the_session() {
        let s = sessions();
        let value = s.seal(&identity()).unwrap();
        let other = s.seal(&identity()).unwrap();
        let clear = s.logout(&cookie_header(&value), false);
        assert_eq!(
            clear,
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
        );
        assert_eq!(
            s.verify(&value),
            Err(AuthError::InvalidSession("session ended"))
        );
        // Other sessions of the same user are unaffected.
        assert!(s.verify(&other).is_ok());
    }

    #[test]
    fn too_many_tenants_do_not_make_a_broken_cookie() {
        let s = sessions();
        let mut id = identity();
        id.tenants = (0..500).map(|i| format!("tenant-number-{i}")).collect();
        assert_eq!(s.seal(&id), Err(LoginError::SessionTooLarge));
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
    fn cookie_parsing() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; whizard_session=abc; whizard_session_x=no; b= 2 "
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_values(&h, "whizard_session"), vec!["abc"]);
        assert_eq!(cookie_values(&h, "b"), vec!["2"]);
        assert!(cookie_values(&h, "c").is_empty());
        assert_eq!(
            query_param("rd=%2Fgraph%3Fa%3D1&x=2", "rd").unwrap(),
            "/graph?a=1"
        );
    }
}
