//! Browser sessions: the sealed `whizard_session` and `whizard_login` cookies, and what the
//! gateway remembers about sessions (logouts, renewals). The login flow that issues them and
//! the per-request use of a session are in [`super::login`].
//!
//! Both cookies are sealed with XChaCha20-Poly1305 (encrypted and authenticated) under keys
//! derived from `ui.cookie_secret` with BLAKE3 `derive_key`, one key per purpose, so a login-flow
//! cookie can never pass for a session and vice versa.
//!
//! - `whizard_session` holds who the user is, never what they may do: the provider (issuer),
//!   the ID-token claims tenants and access are derived from, the refresh token, login time,
//!   absolute end, next renewal and a random session id. Tenants and access are derived from the
//!   current config on every request. `Path=/; HttpOnly; SameSite=Lax`, `Secure` on HTTPS.
//! - `whizard_login`: the PKCE verifier, `state`, `nonce` and return path of one login in
//!   progress; `Path` = the directory of `redirect_url` (e.g. `/oauth2`), 10 minutes.
//!
//! Nothing about a session is stored server-side except, per process, the ids of sessions ended
//! by logout and the last renewal of each session (so concurrent requests renew once). Logout
//! holds across replicas and restarts through the provider: the refresh token is revoked, and a
//! session is renewed at the provider every `ui.session_renew_seconds`.

use super::oidc::Claims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SESSION_COOKIE: &str = "whizard_session";
pub const FLOW_COOKIE: &str = "whizard_login";

/// Browsers keep cookies up to 4096 bytes (name, value and attributes).
pub(super) const MAX_COOKIE_VALUE: usize = 3800;
/// The longest a session may last (`ui.session_hours`), and so how long a logout is remembered.
pub const MAX_SESSION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Lifetime of a session, from login (renewals do not extend it).
    pub ttl: Duration,
    /// How often a session is renewed at the provider (with its refresh token); a session
    /// without a refresh token ends then.
    pub renew: Duration,
    /// Time a user has to complete a login at the provider.
    pub flow_ttl: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: Duration::from_secs(8 * 3600),
            renew: Duration::from_secs(300),
            flow_ttl: Duration::from_secs(600),
        }
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn random_token() -> String {
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

/// Contents of a session cookie: who the user is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionData {
    /// Issuer of the provider the user logged in at.
    #[serde(rename = "p")]
    pub issuer: String,
    /// The ID-token claims identity is derived from (see [`kept_claims`]).
    #[serde(rename = "c")]
    pub claims: Claims,
    /// Logged in at, unix seconds.
    #[serde(rename = "i")]
    pub issued: u64,
    /// Ends at, unix seconds.
    #[serde(rename = "e")]
    pub ends: u64,
    /// Renewed at the provider at or after this time, unix seconds.
    #[serde(rename = "n")]
    pub renew_at: u64,
    /// Random session id (logout, renewal).
    #[serde(rename = "s")]
    pub id: String,
    /// The provider's refresh token, when it gave one.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The claims of an ID token a session keeps: those naming the user (`sub`,
/// `preferred_username`) and the top-level claims of the provider's `tenant_claim`,
/// `groups_claim` and `access_claim` — so a reload that changes group mappings applies to a
/// live session, and the cookie stays small.
pub fn kept_claims(provider: &crate::config::OidcProvider, claims: &Claims) -> Claims {
    let top = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let mut names = vec![
        "sub".to_string(),
        "preferred_username".to_string(),
        top(&provider.tenant_claim),
        top(&provider.access_claim),
        // A claim named with a dot may also exist at the top level under the full name.
        provider.tenant_claim.clone(),
        provider.access_claim.clone(),
    ];
    if let Some(g) = &provider.groups_claim {
        names.push(top(g));
        names.push(g.clone());
    }
    names
        .into_iter()
        .filter_map(|n| claims.get(&n).map(|v| (n, v.clone())))
        .collect()
}

/// Contents of a login-flow cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct FlowData {
    /// PKCE code verifier
    pub v: String,
    pub state: String,
    pub nonce: String,
    /// return path
    pub r: String,
    /// expires at, unix seconds
    pub e: u64,
}

/// A `Set-Cookie` header value.
pub(super) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    secure: bool,
) -> String {
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

/// One renewal of a session at the provider, shared by the requests that need it at once.
pub(super) type Renewal = Arc<tokio::sync::OnceCell<SessionData>>;

/// Why a session cookie is not a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("invalid session cookie")]
    Invalid,
    #[error("session expired")]
    Expired,
    #[error("session ended")]
    Ended,
    #[error("session too large for a cookie (too many claims?)")]
    TooLarge,
}

/// Session cookies: sealing, opening, ending. Kept across config reloads that keep the cookie
/// secret and the options, with what it remembers.
pub struct Sessions {
    session: Sealer,
    flow: Sealer,
    options: SessionOptions,
    /// Session ids ended by logout or refused by the provider, until their cookies would have
    /// expired anyway.
    ended: Cache<String, ()>,
    /// The last renewal of each session, for one renewal interval: requests that arrive with
    /// the cookie from before the renewal (in flight at once, or whose answer carrying the new
    /// cookie was never delivered) use it instead of spending the refresh token again.
    renewals: Cache<String, Renewal>,
}

impl Sessions {
    /// Sessions keyed by `ui.cookie_secret`; `None` when it is not set.
    pub fn new(ui: &crate::config::Ui) -> Option<Sessions> {
        let secret = ui.cookie_secret.as_deref()?;
        Some(Self::from_secret(
            secret.as_bytes(),
            SessionOptions {
                ttl: ui.session_ttl,
                renew: ui.session_renew,
                ..SessionOptions::default()
            },
        ))
    }

    pub fn from_secret(secret: &[u8], options: SessionOptions) -> Sessions {
        Sessions {
            session: Sealer::new(secret, "whizard 2026 session cookie v2"),
            flow: Sealer::new(secret, "whizard 2025 login flow cookie v1"),
            ended: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(options.ttl.min(MAX_SESSION))
                .build(),
            renewals: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(options.renew.max(Duration::from_secs(1)))
                .build(),
            options,
        }
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// A new session for a user who just logged in at `issuer`.
    pub fn start(
        &self,
        issuer: &str,
        claims: Claims,
        refresh_token: Option<String>,
    ) -> SessionData {
        let now = unix_now();
        SessionData {
            issuer: issuer.to_string(),
            claims,
            issued: now,
            ends: now + self.options.ttl.as_secs(),
            renew_at: now + self.options.renew.as_secs(),
            id: random_token(),
            refresh_token,
        }
    }

    /// The cookie value of a session.
    pub fn seal(&self, data: &SessionData) -> Result<String, CookieError> {
        let json = serde_json::to_vec(data).map_err(|_| CookieError::TooLarge)?;
        let value = self.session.seal(&json);
        if value.len() > MAX_COOKIE_VALUE {
            return Err(CookieError::TooLarge);
        }
        Ok(value)
    }

    /// The `Set-Cookie` value carrying a session; `Max-Age` is the time it has left.
    pub fn set_cookie(&self, data: &SessionData, secure: bool) -> Result<String, CookieError> {
        let value = self.seal(data)?;
        let left = data.ends.saturating_sub(unix_now()).max(1);
        Ok(set_cookie(SESSION_COOKIE, &value, "/", left, secure))
    }

    /// The `Set-Cookie` value removing the session cookie.
    pub fn clear_cookie(secure: bool) -> String {
        set_cookie(SESSION_COOKIE, "", "/", 0, secure)
    }

    /// Opens a session cookie value: sealed by us, not expired, not ended.
    pub fn open(&self, value: &str) -> Result<SessionData, CookieError> {
        let plain = self.session.open(value).ok_or(CookieError::Invalid)?;
        let data: SessionData = serde_json::from_slice(&plain).map_err(|_| CookieError::Invalid)?;
        if data.ends <= unix_now() {
            return Err(CookieError::Expired);
        }
        if self.ended.contains_key(&data.id) {
            return Err(CookieError::Ended);
        }
        Ok(data)
    }

    /// Ends a session in this process (logout, or refused by the provider).
    pub fn end(&self, id: &str) {
        self.ended.insert(id.to_string(), ());
        self.renewals.invalidate(id);
    }

    /// The renewal slot of session `id` (see `renewals`).
    pub(super) fn renewal(&self, id: &str) -> Renewal {
        self.renewals
            .get_with_by_ref(id, || Arc::new(tokio::sync::OnceCell::new()))
    }

    /// Forgets a failed renewal so the next request tries again.
    pub(super) fn forget_renewal(&self, id: &str) {
        self.renewals.invalidate(id);
    }

    pub(super) fn seal_flow(&self, flow: &FlowData) -> String {
        self.flow
            .seal(&serde_json::to_vec(flow).unwrap_or_default())
    }

    pub(super) fn open_flow(&self, value: &str) -> Option<FlowData> {
        let plain = self.flow.open(value)?;
        let flow: FlowData = serde_json::from_slice(&plain).ok()?;
        (flow.e > unix_now()).then_some(flow)
    }
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

    fn alice(s: &Sessions) -> SessionData {
        let claims = json!({"sub": "alice", "tenant": "team-a"});
        s.start(
            "https://idp.example",
            claims.as_object().cloned().unwrap_or_default(),
            Some("refresh-1".into()),
        )
    }

    #[test]
    fn cookie_round_trip() {
        let s = sessions();
        let data = alice(&s);
        assert_eq!(data.ends - data.issued, 8 * 3600);
        assert_eq!(data.renew_at - data.issued, 300);
        let set = s.set_cookie(&data, true).unwrap();
        assert!(set.starts_with(&format!("{SESSION_COOKIE}=")));
        for attr in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
            assert!(set.contains(attr), "{set}");
        }
        let max_age: u64 = set
            .split("Max-Age=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((28790..=28800).contains(&max_age), "{set}");
        assert!(!s.set_cookie(&data, false).unwrap().contains("Secure"));
        let value = s.seal(&data).unwrap();
        // The content is encrypted: neither the user nor the refresh token shows.
        let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"alice"));
        assert!(!raw.windows(9).any(|w| w == b"refresh-1"));
        assert_eq!(s.open(&value).unwrap(), data);
    }

    #[test]
    fn tampered_foreign_expired_and_flow_cookies_are_refused() {
        let s = sessions();
        let value = s.seal(&alice(&s)).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        for i in [0, 24, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(s.open(&tampered), Err(CookieError::Invalid));
            raw[i] ^= 1;
        }
        for bad in ["", "!!!", &"A".repeat(100)] {
            assert_eq!(s.open(bad), Err(CookieError::Invalid));
        }
        let other = Sessions::from_secret(
            b"another secret of at least 32 bytes!!",
            SessionOptions::default(),
        );
        assert_eq!(other.open(&value), Err(CookieError::Invalid));
        // A flow cookie is not a session (different key and AAD), and vice versa.
        let flow = s.seal_flow(&FlowData {
            v: "v".into(),
            state: "s".into(),
            nonce: "n".into(),
            r: "/".into(),
            e: unix_now() + 60,
        });
        assert_eq!(s.open(&flow), Err(CookieError::Invalid));
        assert!(s.open_flow(&value).is_none());
        // A cookie of the first format (user, tenants and access in the cookie) is no session.
        let v1 = Sealer::new(
            b"0123456789abcdef0123456789abcdef-test",
            "whizard 2025 session cookie v1",
        )
        .seal(br#"{"u":"alice","t":["team-a"],"a":3,"i":1,"e":99999999999,"s":"x"}"#);
        assert_eq!(s.open(&v1), Err(CookieError::Invalid));
        // Expired: sealed with the right key, but past its end.
        let mut old = alice(&s);
        old.ends = unix_now() - 1;
        assert_eq!(s.open(&s.seal(&old).unwrap()), Err(CookieError::Expired));
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
    fn an_ended_session_stays_ended_others_do_not() {
        let s = sessions();
        let one = alice(&s);
        let two = alice(&s);
        s.end(&one.id);
        assert_eq!(s.open(&s.seal(&one).unwrap()), Err(CookieError::Ended));
        assert!(s.open(&s.seal(&two).unwrap()).is_ok());
        assert_eq!(
            Sessions::clear_cookie(false),
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
        );
    }

    #[test]
    fn too_many_claims_do_not_make_a_broken_cookie() {
        let s = sessions();
        let groups: Vec<String> = (0..500).map(|i| format!("group-number-{i}")).collect();
        let claims = json!({"sub": "alice", "groups": groups});
        let data = s.start(
            "https://idp.example",
            claims.as_object().cloned().unwrap_or_default(),
            None,
        );
        assert_eq!(s.seal(&data), Err(CookieError::TooLarge));
    }

    #[test]
    fn a_session_keeps_only_the_claims_identity_is_derived_from() {
        let provider = crate::config::OidcProvider {
            issuer: "https://idp.example".into(),
            audience: "whizard".into(),
            tenant_claim: "org.tenant".into(),
            access_claim: "scope".into(),
            groups_claim: Some("groups".into()),
            group_tenants: Default::default(),
            client_id: None,
            client_secret: None,
            redirect_url: None,
        };
        let claims = json!({
            "sub": "alice", "preferred_username": "Alice", "email": "a@example",
            "org": {"tenant": "team-a"}, "groups": ["devs"], "scope": "read",
            "nonce": "n", "at_hash": "x", "aud": "ui", "exp": 1, "iat": 0, "name": "A"
        });
        let kept = kept_claims(&provider, claims.as_object().unwrap());
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            ["groups", "org", "preferred_username", "scope", "sub"]
        );
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
    }
}
