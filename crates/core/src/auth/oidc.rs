//! OAuth2/OIDC bearer tokens: `Authorization: Bearer <jwt>` from the providers in `oidc`.
//!
//! Per provider (an [`Issuer`]): discovery at `{issuer}/.well-known/openid-configuration`, then the
//! JWKS at its `jwks_uri`, kept in an [`ArcSwap`] so verification never takes a lock. Keys are
//! refreshed by [`OidcAuth::refresh_loop`] on a timer, and on a token whose `kid` is unknown —
//! at most one fetch at a time per provider (single-flight) and not more often than
//! [`OidcOptions::unknown_kid_cooldown`], so a flood of made-up `kid`s cannot make us hammer the
//! provider. A failed fetch never drops the keys we have: cached keys keep working while the
//! provider is down.
//!
//! Verification rules:
//! - the algorithm comes from the key, never from the token alone: a JWK with `alg` allows exactly
//!   that; one without allows what its key type can do (RSA → RS*/PS*, EC P-256 → ES256,
//!   P-384 → ES384, OKP Ed25519 → EdDSA). Symmetric (`oct`) JWKs are ignored, so HMAC tokens —
//!   including the "public key as HMAC secret" trick — and `alg=none` are refused;
//! - `iss` must equal the provider's `issuer` (a trailing `/` is tolerated, because the config
//!   strips it), `aud` must contain `audience`, `exp` is required, `exp`/`nbf` get
//!   [`OidcOptions::leeway`] seconds;
//! - the provider is chosen by the (unverified) `iss` of the token; a token from an issuer that is
//!   not configured is refused (401) without any network access;
//! - a header with `crit` is refused: RFC 7515 §4.1.11 requires refusing a JWS whose critical
//!   extensions we do not understand, and we understand none.
//!
//! Trust: every provider has its own HTTP client (see [`OidcAuth::for_config`]), built from its
//! own `oidc[].tls`, never from `upstreams.tls` — whoever can answer for the provider's
//! discovery or JWKS mints tokens for every tenant. The JWKS and token endpoint named by the
//! discovery document must be `https://` (plain `http://` only on loopback, as for the issuer
//! in the config), and the client follows no redirects.
//!
//! Claims → identity (see [`identity_from_claims`]):
//! - tenants: `tenant_claim` holds a tenant id or a list of them; with `groups_claim` set, every
//!   group listed in `group_tenants` adds its tenants. Values that are not valid tenant ids
//!   (1-128 of `[A-Za-z0-9._-]`, not `.`/`..`) are dropped. A claim name containing `.` that is
//!   not a top-level claim is looked up as a path (`realm_access.roles`).
//! - access: `access_claim` is a space-separated string or a list; `read` and `write` grant read
//!   and write, and so do `{audience}:read` / `{audience}:write` (e.g. `whizard:write`), for
//!   providers whose scopes must be namespaced. Anything else is ignored; `write` does not imply
//!   `read`. No access claim → no access (the tenancy layer answers 403).
//! - a valid token without any tenant is authenticated with no tenants: the tenancy layer
//!   answers 403 ("authenticated, but not allowed"), not 401.
//! - name: `preferred_username`, else `sub`, else `client_id`.
//!
//! Verified tokens are cached (moka) under a keyed BLAKE3 hash of the token, for at most
//! [`OidcOptions::max_cache_ttl`] and never past the token's `exp`.

use super::{AuthError, AuthMethod, AuthOutcome, Authenticator, Identity};
use crate::config::{is_loopback_host, Access, OidcConfig, OidcProvider, OidcTls};
use crate::digest_hash::DigestHashing;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Claims of a verified token.
pub type Claims = Map<String, Value>;

/// Longest bearer token we look at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest discovery document or JWKS we read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys we keep from one JWKS.
const MAX_KEYS: usize = 64;

/// Tunables; the defaults suit production.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Keys are re-fetched this often by [`OidcAuth::refresh_loop`].
    pub refresh_interval: Duration,
    /// After a failed timer refresh, the next try comes this soon.
    pub retry_interval: Duration,
    /// A token with an unknown `kid` triggers a fetch at most this often. Timer fetches and the
    /// first load do not count, so a key rotated right after a timer fetch is found at once.
    pub unknown_kid_cooldown: Duration,
    /// After a failed fetch, requests do not trigger another one for this long (they get
    /// `Unavailable` right away).
    pub failure_cooldown: Duration,
    /// Timeout of one discovery or JWKS request.
    pub http_timeout: Duration,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// Longest time a verified token stays cached (never beyond its `exp`).
    pub max_cache_ttl: Duration,
    pub cache_capacity: u64,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            refresh_interval: Duration::from_secs(300),
            retry_interval: Duration::from_secs(15),
            unknown_kid_cooldown: Duration::from_secs(30),
            failure_cooldown: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
            leeway: 30,
            max_cache_ttl: Duration::from_secs(300),
            cache_capacity: 100_000,
        }
    }
}

/// The `WWW-Authenticate` value of a 401 answer: `Bearer realm="whizard"` when the request had no
/// credentials (`None`), and with `error="invalid_token", error_description="..."` for a refused
/// token. Descriptions are fixed strings, never text from the request.
pub fn www_authenticate(error: Option<&AuthError>) -> http::HeaderValue {
    let value = match error {
        Some(AuthError::InvalidToken(d)) => {
            format!("Bearer realm=\"whizard\", error=\"invalid_token\", error_description=\"{d}\"")
        }
        Some(AuthError::Malformed(d)) => format!(
            "Bearer realm=\"whizard\", error=\"invalid_request\", error_description=\"{d}\""
        ),
        _ => "Bearer realm=\"whizard\"".to_string(),
    };
    http::HeaderValue::from_str(&value)
        .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer realm=\"whizard\""))
}

/// Endpoints from the discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 7009: where logout revokes a session's refresh token.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// One verification key of a JWKS.
struct VerifyKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<VerifyKey>,
    discovery: Option<Arc<Discovery>>,
}

/// Why keys could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    #[error("provider answered HTTP {0}")]
    Status(u16),
    #[error("bad answer from provider: {0}")]
    Invalid(String),
}

#[derive(Default)]
struct RefreshState {
    /// When the last fetch finished, and how it went.
    last_finished: Option<Instant>,
    last_result: Option<Result<(), FetchError>>,
    /// When the last fetch caused by an unknown `kid` (with keys already loaded) started.
    last_kid_fetch: Option<Instant>,
}

/// Why keys are fetched; decides which cooldown applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The refresh timer: no cooldown.
    Timer,
    /// Nothing loaded yet (first request, or discovery needed): only the failure cooldown.
    Load,
    /// A token names a key we do not have: failure cooldown, and at most one such fetch per
    /// `unknown_kid_cooldown`.
    UnknownKid,
}

/// Discovery and keys of one configured provider.
pub struct Issuer {
    config: OidcProvider,
    /// The `oidc[].tls` `http` was built from: keys are carried over a reload only when the
    /// trust they were fetched under is still the configured one.
    tls: OidcTls,
    /// This provider's own client: discovery, JWKS and (browser login) the token endpoint.
    http: reqwest::Client,
    options: OidcOptions,
    keys: ArcSwap<KeySet>,
    /// Held while fetching: one fetch at a time.
    refresh: tokio::sync::Mutex<RefreshState>,
    /// Fetch attempts so far (discovery + JWKS count as one).
    fetches: std::sync::atomic::AtomicU64,
}

impl Issuer {
    pub fn new(config: OidcProvider, http: reqwest::Client, options: OidcOptions) -> Issuer {
        Self::with_tls(config, OidcTls::default(), http, options, None)
    }

    /// An issuer whose client `http` was built from `tls`; starts with the keys and discovery
    /// of `previous` (the same provider before a reload), so tokens keep verifying while the
    /// new instance refetches.
    fn with_tls(
        config: OidcProvider,
        tls: OidcTls,
        http: reqwest::Client,
        options: OidcOptions,
        previous: Option<&Issuer>,
    ) -> Issuer {
        // Every JWT check goes through an issuer: jsonwebtoken's crypto is ring from here on.
        crate::auth::jwt_crypto::install();
        let keys = match previous {
            Some(old) => ArcSwap::new(old.keys.load_full()),
            None => ArcSwap::from_pointee(KeySet::default()),
        };
        Issuer {
            config,
            tls,
            http,
            options,
            keys,
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &OidcProvider {
        &self.config
    }

    /// The provider's own HTTP client (never the upstreams' one): the browser login's
    /// token-endpoint call must use it too, so `client_secret` goes only where the keys come
    /// from.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Whether `iss` names this provider (a trailing `/` is tolerated).
    pub fn matches(&self, iss: &str) -> bool {
        iss == self.config.issuer || iss.strip_suffix('/') == Some(self.config.issuer.as_str())
    }

    /// The discovery document, fetching keys first when we have none.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, FetchError> {
        if let Some(d) = &self.keys.load().discovery {
            return Ok(d.clone());
        }
        self.refresh_now(Instant::now(), Reason::Load).await?;
        self.keys
            .load()
            .discovery
            .clone()
            .ok_or_else(|| FetchError::Invalid("no discovery document".into()))
    }

    /// How many times keys were fetched, successfully or not (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many keys are cached (for tests and diagnostics).
    pub fn key_count(&self) -> usize {
        self.keys.load().keys.len()
    }

    async fn get_document(&self, url: &str) -> Result<bytes::Bytes, FetchError> {
        let mut resp = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.options.http_timeout)
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::Invalid("document too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Fetches discovery (unless known and `rediscover` is false) and the JWKS, and swaps them in.
    async fn fetch(&self, rediscover: bool) -> Result<(), FetchError> {
        let current = self.keys.load_full();
        let discovery = match (&current.discovery, rediscover) {
            (Some(d), false) => d.clone(),
            _ => {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
                let body = self.get_document(&url).await?;
                let d: Discovery = serde_json::from_slice(&body)
                    .map_err(|e| FetchError::Invalid(format!("discovery document: {e}")))?;
                if !self.matches(&d.issuer) {
                    return Err(FetchError::Invalid(format!(
                        "discovery document names issuer {:?}",
                        d.issuer
                    )));
                }
                check_endpoint("jwks_uri", &d.jwks_uri)?;
                // Both receive the client secret (and refresh tokens).
                if let Some(token) = &d.token_endpoint {
                    check_endpoint("token_endpoint", token)?;
                }
                if let Some(revocation) = &d.revocation_endpoint {
                    check_endpoint("revocation_endpoint", revocation)?;
                }
                Arc::new(d)
            }
        };
        let body = self.get_document(&discovery.jwks_uri).await?;
        let keys = parse_jwks(&body)?;
        tracing::debug!(issuer = %self.config.issuer, keys = keys.len(), "fetched JWKS");
        self.keys.store(Arc::new(KeySet {
            keys,
            discovery: Some(discovery),
        }));
        Ok(())
    }

    /// Fetches keys now, unless a fetch finished while we waited for the lock (single-flight:
    /// we share its result) or a cooldown applies (we get the last result). A skipped
    /// unknown-`kid` fetch after a success answers `Ok`: the key is then reported unknown.
    async fn refresh_now(&self, requested_at: Instant, reason: Reason) -> Result<(), FetchError> {
        let mut state = self.refresh.lock().await;
        if let (Some(at), Some(result)) = (state.last_finished, &state.last_result) {
            if at >= requested_at {
                return result.clone();
            }
            if reason != Reason::Timer
                && result.is_err()
                && at.elapsed() < self.options.failure_cooldown
            {
                return result.clone();
            }
        }
        let loaded = self.keys.load().discovery.is_some();
        // The unknown-kid cooldown only follows successful fetches: after a failure the
        // (shorter) failure cooldown above applies, so a provider that comes back is used at once.
        let last_ok = matches!(state.last_result, Some(Ok(())));
        if reason == Reason::UnknownKid && loaded && last_ok {
            if let Some(at) = state.last_kid_fetch {
                if at.elapsed() < self.options.unknown_kid_cooldown {
                    return state.last_result.clone().unwrap_or(Ok(()));
                }
            }
        }
        if reason == Reason::UnknownKid {
            state.last_kid_fetch = Some(Instant::now());
        }
        // Re-discover after a failure: the provider may have moved its JWKS.
        let rediscover = !matches!(state.last_result, Some(Ok(())));
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.fetch(rediscover).await;
        if let Err(e) = &result {
            tracing::warn!(issuer = %self.config.issuer, error = %e, "could not fetch OIDC keys");
        }
        state.last_finished = Some(Instant::now());
        state.last_result = Some(result.clone());
        result
    }

    /// Refreshes the keys now (the timer's path): single-flight, no cooldown.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        self.refresh_now(Instant::now(), Reason::Timer).await
    }

    /// Verifies a JWT from this provider: signature with a key of the JWKS, `iss`, `aud`
    /// containing `audience`, `exp`/`nbf`. Returns its claims.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Claims, AuthError> {
        check_header(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token"))?;
        let requested = Instant::now();
        let mut refreshed = false;
        loop {
            let keys = self.keys.load();
            let candidates: Vec<&VerifyKey> = keys
                .keys
                .iter()
                .filter(|k| match &header.kid {
                    Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                    None => k.algorithms.contains(&header.alg),
                })
                .collect();
            if !candidates.is_empty() {
                return self.verify_with(token, header.alg, audience, &candidates);
            }
            if refreshed {
                return Err(AuthError::InvalidToken("unknown signing key"));
            }
            let reason = if keys.discovery.is_some() {
                Reason::UnknownKid
            } else {
                Reason::Load
            };
            drop(keys);
            match self.refresh_now(requested, reason).await {
                Ok(()) => refreshed = true,
                Err(_) => {
                    // Keys we have were checked above: this token needs one we cannot fetch.
                    return Err(AuthError::Unavailable);
                }
            }
        }
    }

    fn verify_with(
        &self,
        token: &str,
        alg: Algorithm,
        audience: &str,
        candidates: &[&VerifyKey],
    ) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.options.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[audience]);
        let issuer = self.config.issuer.as_str();
        validation.set_issuer(&[issuer.to_string(), format!("{issuer}/")]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut error = AuthError::InvalidToken("algorithm not allowed for this key");
        for key in candidates {
            if !key.algorithms.contains(&alg) {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => error = AuthError::InvalidToken(describe(&e)),
            }
        }
        Err(error)
    }
}

/// Refuses, before the JWT library sees the token, `alg` values we never accept (`none`, HMAC,
/// anything unknown) and any `crit` parameter. jsonwebtoken parses `crit` but does not act on
/// it; RFC 7515 §4.1.11 says a recipient that does not understand a listed extension must
/// refuse the JWS, and we implement no extension (e.g. RFC 7797 `b64: false` would change what
/// the signature covers). An empty or malformed `crit` is invalid too, so its mere presence is
/// enough.
fn check_header(token: &str) -> Result<(), AuthError> {
    #[derive(Deserialize)]
    struct Head {
        alg: Option<String>,
        crit: Option<Value>,
    }
    let malformed = AuthError::InvalidToken("malformed token");
    let first = token.split('.').next().ok_or(malformed.clone())?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .map_err(|_| malformed.clone())?;
    let head: Head = serde_json::from_slice(&raw).map_err(|_| malformed)?;
    match head.alg.as_deref() {
        Some(
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA",
        ) => {}
        _ => return Err(AuthError::InvalidToken("algorithm not allowed")),
    }
    if head.crit.is_some() {
        return Err(AuthError::InvalidToken(
            "critical header parameter not supported",
        ));
    }
    Ok(())
}

/// An endpoint named by the discovery document must be as safe to call as the issuer: https,
/// or http on loopback. Discovery itself came over verified TLS, but a plain-http `jwks_uri`
/// would hand the keys (and a plain-http token endpoint the `client_secret`) to anyone on the
/// path.
fn check_endpoint(name: &str, value: &str) -> Result<(), FetchError> {
    let url = url::Url::parse(value)
        .map_err(|_| FetchError::Invalid(format!("discovery document: {name} is not a URL")))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| is_loopback_host(h.trim_start_matches('[').trim_end_matches(']')));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(FetchError::Invalid(format!(
            "discovery document: {name} {value:?} is not https:// (plain http only on loopback)"
        ))),
    }
}

/// A short, fixed description of a verification failure (for `error_description`).
fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid",
        K::InvalidAudience => "audience not accepted",
        K::InvalidIssuer => "issuer not accepted",
        K::InvalidSignature => "signature invalid",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm not allowed",
        K::MissingRequiredClaim(_) => "required claim missing",
        _ => "malformed token",
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Parses a JWKS, keeping the signature keys we can use. Keys we cannot use (encryption keys,
/// symmetric keys, unknown types or curves) are skipped, not fatal.
fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, FetchError> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|e| FetchError::Invalid(format!("JWKS: {e}")))?;
    let mut keys = Vec::new();
    for value in raw.keys {
        if keys.len() >= MAX_KEYS {
            break;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some(k) = verify_key(&jwk) {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // Symmetric keys never verify anything here: no HMAC.
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
        None => by_type.to_vec(),
        Some(ka) => {
            let alg = match ka {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            if !by_type.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

/// Looks up a claim by name, or — when the name has a `.` and no top-level claim has that
/// name — by path through nested objects.
pub fn claim<'c>(claims: &'c Claims, name: &str) -> Option<&'c Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// A claim holding one string or a list of strings (non-strings in the list are ignored).
fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Same rule as `tenants[].id` in the config: 1-128 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Tenants of a token: `tenant_claim` plus, when configured, `group_tenants` of `groups_claim`.
/// Sorted, deduplicated, invalid ids dropped.
pub fn tenants_from_claims(provider: &OidcProvider, claims: &Claims) -> Vec<String> {
    let mut tenants: Vec<String> = strings(claim(claims, &provider.tenant_claim))
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(groups_claim) = &provider.groups_claim {
        for group in strings(claim(claims, groups_claim)) {
            if let Some(ts) = provider.group_tenants.get(group) {
                tenants.extend(ts.iter().cloned());
            }
        }
    }
    tenants.retain(|t| valid_tenant_id(t));
    tenants.sort();
    tenants.dedup();
    tenants
}

/// Access of a token from `access_claim`: `None` when the claim is absent.
pub fn access_from_claims(provider: &OidcProvider, claims: &Claims) -> Option<Access> {
    let value = claim(claims, &provider.access_claim)?;
    let words: Vec<&str> = match value {
        Value::String(s) => s.split_ascii_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return Some(Access::default()),
    };
    let mut access = Access::default();
    for w in words {
        let w = match w.strip_prefix(provider.audience.as_str()) {
            Some(rest) => match rest.strip_prefix(':') {
                Some(r) => r,
                None => w,
            },
            None => w,
        };
        match w {
            "read" => access.read = true,
            "write" => access.write = true,
            _ => {}
        }
    }
    Some(access)
}

/// Display name of a token's subject: `preferred_username`, else `sub`, else `client_id`.
pub fn name_from_claims(claims: &Claims) -> String {
    ["preferred_username", "sub", "client_id"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

/// The identity of verified claims. `default_access` applies when `access_claim` is absent.
pub fn identity_from_claims(
    provider: &OidcProvider,
    claims: &Claims,
    method: AuthMethod,
    default_access: Access,
) -> Identity {
    Identity {
        name: name_from_claims(claims),
        tenants: tenants_from_claims(provider, claims),
        access: access_from_claims(provider, claims).unwrap_or(default_access),
        method,
        write_routing: crate::config::WriteRouting::Named,
    }
}

/// Reads `iss` (unverified) from a JWT, to choose the provider.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Iss>(&raw).ok()?.iss
}

#[derive(Clone)]
struct CachedToken {
    identity: Arc<Identity>,
    /// `exp` of the token, unix seconds.
    exp: u64,
}

struct UntilExp {
    max: Duration,
}

impl moka::Expiry<[u8; 32], CachedToken> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &CachedToken,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.exp.saturating_sub(unix_now());
        Some(Duration::from_secs(left).min(self.max))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The bearer-token authenticator over every configured provider.
pub struct OidcAuth {
    issuers: Vec<Arc<Issuer>>,
    /// Dropped with the `OidcAuth`: ends its refresh loop.
    alive: tokio::sync::watch::Sender<()>,
    options: OidcOptions,
    cache_key: [u8; 32],
    verified: Cache<[u8; 32], CachedToken, DigestHashing>,
}

impl OidcAuth {
    /// Builds the authenticator with `http` as the client of every provider; fetches nothing
    /// yet (see [`OidcAuth::spawn_refresh`]). For tests and tools whose providers all share one
    /// trust; the gateway uses [`OidcAuth::for_config`].
    pub fn new(providers: &[OidcProvider], http: reqwest::Client) -> OidcAuth {
        Self::with_options(providers, http, OidcOptions::default(), None)
    }

    /// Like [`OidcAuth::new`], with options, and starting from the discovery/keys of `previous`
    /// (the instance of the config before a reload) for providers whose config did not change.
    pub fn with_options(
        providers: &[OidcProvider],
        http: reqwest::Client,
        options: OidcOptions,
        previous: Option<&OidcAuth>,
    ) -> OidcAuth {
        let configs: Vec<OidcConfig> = providers
            .iter()
            .map(|p| OidcConfig {
                provider: p.clone(),
                tls: OidcTls::default(),
            })
            .collect();
        let shared = |_: usize, _: &OidcConfig| Ok::<_, std::convert::Infallible>(http.clone());
        match Self::for_config(&configs, options, previous, shared) {
            Ok(auth) => auth,
            Err(never) => match never {},
        }
    }

    /// The gateway's constructor: each provider gets the client `client` builds for it (index
    /// in `oidc`, its config) — from its own `oidc[].tls`, so no provider is ever called with
    /// another one's trust or the upstreams'. A provider whose config (tokens and TLS) did not
    /// change starts with the keys of its instance in `previous`; its client is always new, so
    /// a CA file replaced in place takes effect on reload.
    pub fn for_config<E>(
        configs: &[OidcConfig],
        options: OidcOptions,
        previous: Option<&OidcAuth>,
        mut client: impl FnMut(usize, &OidcConfig) -> Result<reqwest::Client, E>,
    ) -> Result<OidcAuth, E> {
        let mut issuers = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let http = client(i, c)?;
            let old = previous.and_then(|old| {
                old.issuers
                    .iter()
                    .find(|o| o.tls == c.tls && same_provider(o.config(), &c.provider))
            });
            issuers.push(Arc::new(Issuer::with_tls(
                c.provider.clone(),
                c.tls.clone(),
                http,
                options.clone(),
                old.map(|o| o.as_ref()),
            )));
        }
        let verified = Cache::builder()
            .max_capacity(options.cache_capacity)
            .expire_after(UntilExp {
                max: options.max_cache_ttl,
            })
            .build_with_hasher(DigestHashing::default());
        Ok(OidcAuth {
            issuers,
            alive: tokio::sync::watch::channel(()).0,
            options,
            cache_key: rand::random(),
            verified,
        })
    }

    pub fn issuers(&self) -> &[Arc<Issuer>] {
        &self.issuers
    }

    /// The provider used for browser login: the first one with a `client_id`.
    pub fn login_issuer(&self) -> Option<Arc<Issuer>> {
        self.issuers
            .iter()
            .find(|i| i.config().client_id.is_some())
            .cloned()
    }

    /// The provider whose `issuer` is `iss`.
    pub fn issuer_for(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.issuers.iter().find(|i| i.matches(iss))
    }

    /// Fetches every provider's keys once, one after the other; failures are logged (and
    /// retried by the refresh loop or the next request).
    pub async fn refresh_all(&self) {
        for issuer in &self.issuers {
            let _ = issuer.refresh().await;
        }
    }

    /// Keeps the keys fresh: fetches every provider's keys now, then every
    /// `refresh_interval` (every `retry_interval` after a failure). Holds only a weak reference:
    /// returns when the `OidcAuth` is dropped (e.g. replaced by a config reload).
    pub async fn refresh_loop(self: Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(&self);
        let mut alive = self.alive.subscribe();
        drop(self);
        loop {
            let Some(this) = weak.upgrade() else { return };
            let mut ok = true;
            for issuer in &this.issuers {
                ok &= issuer.refresh().await.is_ok();
            }
            let wait = if ok {
                this.options.refresh_interval
            } else {
                this.options.retry_interval
            };
            drop(this);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Err: the sender (the OidcAuth) is gone.
                _ = alive.changed() => return,
            }
        }
    }

    /// Spawns [`OidcAuth::refresh_loop`] on the current tokio runtime.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().refresh_loop())
    }

    fn token_key(&self, token: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.cache_key, token.as_bytes()).as_bytes()
    }

    /// Verifies a bearer token (the part after `Bearer `).
    pub async fn verify_token(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::InvalidToken("malformed token"));
        }
        let key = self.token_key(token);
        if let Some(hit) = self.verified.get(&key) {
            if hit.exp > unix_now() {
                return Ok(hit.identity);
            }
        }
        check_header(token)?;
        let iss = unverified_issuer(token).ok_or(AuthError::InvalidToken("malformed token"))?;
        let issuer = self
            .issuer_for(&iss)
            .ok_or(AuthError::InvalidToken("issuer not accepted"))?;
        let claims = issuer.verify(token, &issuer.config().audience).await?;
        let identity = Arc::new(identity_from_claims(
            issuer.config(),
            &claims,
            AuthMethod::Bearer,
            Access::default(),
        ));
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            self.verified.insert(
                key,
                CachedToken {
                    identity: identity.clone(),
                    exp,
                },
            );
        }
        Ok(identity)
    }
}

fn same_provider(a: &OidcProvider, b: &OidcProvider) -> bool {
    // An `Issuer` carries its config: carry its keys over only when nothing changed.
    a.issuer == b.issuer
        && a.audience == b.audience
        && a.tenant_claim == b.tenant_claim
        && a.access_claim == b.access_claim
        && a.groups_claim == b.groups_claim
        && a.group_tenants == b.group_tenants
        && a.client_id == b.client_id
        && a.client_secret == b.client_secret
        && a.redirect_url == b.redirect_url
}

/// Extracts the token of `Authorization: Bearer <token>`: `None` for another scheme.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<Result<&str, AuthError>> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = std::str::from_utf8(&value[7..])
        .map(str::trim)
        .map_err(|_| AuthError::Malformed("bearer token is not ASCII"));
    Some(token.and_then(|t| {
        if t.is_empty() {
            Err(AuthError::Malformed("empty bearer token"))
        } else {
            Ok(t)
        }
    }))
}

#[async_trait]
impl Authenticator for OidcAuth {
    fn method(&self) -> AuthMethod {
        AuthMethod::Bearer
    }

    async fn authenticate(&self, headers: &http::HeaderMap) -> AuthOutcome {
        if self.issuers.is_empty() {
            return AuthOutcome::NotApplicable;
        }
        match bearer_token(headers) {
            None => AuthOutcome::NotApplicable,
            Some(Err(e)) => AuthOutcome::Failed(e),
            Some(Ok(token)) => match self.verify_token(token).await {
                Ok(identity) => AuthOutcome::Authenticated(identity),
                Err(e) => AuthOutcome::Failed(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// reqwest has no crypto provider of its own: install ring (the gateway's) first.
    fn test_client() -> reqwest::Client {
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        crate::auth::jwt_crypto::install();
        reqwest::Client::new()
    }

    fn provider() -> OidcProvider {
        OidcProvider {
            issuer: "http://idp.test".into(),
            audience: "whizard".into(),
            tenant_claim: "tenant".into(),
            access_claim: "scope".into(),
            groups_claim: Some("groups".into()),
            group_tenants: BTreeMap::from([
                (
                    "ops".to_string(),
                    vec!["team-a".to_string(), "team-c".to_string()],
                ),
                ("devs".to_string(), vec!["team-b".to_string()]),
            ]),
            client_id: None,
            client_secret: None,
            redirect_url: None,
        }
    }

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tenants_from_string_list_groups_and_paths() {
        let p = provider();
        assert_eq!(
            tenants_from_claims(&p, &claims(json!({"tenant": "team-a"}))),
            vec!["team-a"]
        );
        assert_eq!(
            tenants_from_claims(
                &p,
                &claims(json!({"tenant": ["team-b", "team-a", "team-b", 7, null]}))
            ),
            vec!["team-a", "team-b"]
        );
        assert_eq!(
            tenants_from_claims(
                &p,
                &claims(json!({"tenant": "team-d", "groups": ["ops", "unknown"]}))
            ),
            vec!["team-a", "team-c", "team-d"]
        );
        assert_eq!(
            tenants_from_claims(&p, &claims(json!({"groups": "devs"}))),
            vec!["team-b"]
        );
        // Invalid ids are dropped.
        assert!(tenants_from_claims(
            &p,
            &claims(json!({"tenant": ["", "..", "a b", "x\"y", "a|b", "é"]}))
        )
        .is_empty());
        assert!(tenants_from_claims(&p, &claims(json!({"tenant": {"a": 1}}))).is_empty());
        assert!(tenants_from_claims(&p, &claims(json!({}))).is_empty());
        // Dotted path when no top-level claim has the name.
        let mut nested = provider();
        nested.tenant_claim = "ext.tenants".into();
        assert_eq!(
            tenants_from_claims(&nested, &claims(json!({"ext": {"tenants": ["x"]}}))),
            vec!["x"]
        );
        assert_eq!(
            tenants_from_claims(
                &nested,
                &claims(json!({"ext.tenants": "y", "ext": {"tenants": "x"}}))
            ),
            vec!["y"]
        );
        // Without groups_claim, groups are not looked at.
        let mut no_groups = provider();
        no_groups.groups_claim = None;
        assert!(tenants_from_claims(&no_groups, &claims(json!({"groups": ["ops"]}))).is_empty());
    }

    #[test]
    fn access_from_scope_string_or_list() {
        let p = provider();
        let a = |v: Value| access_from_claims(&p, &claims(v));
        assert_eq!(
            a(json!({"scope": "openid write"})),
            Some(Access {
                read: false,
                write: true
            })
        );
        assert_eq!(
            a(json!({"scope": "read  write"})),
            Some(Access {
                read: true,
                write: true
            })
        );
        assert_eq!(
            a(json!({"scope": ["read"]})),
            Some(Access {
                read: true,
                write: false
            })
        );
        assert_eq!(
            a(json!({"scope": "whizard:write whizard:read"})),
            Some(Access {
                read: true,
                write: true
            })
        );
        // Other namespaces, look-alikes and case variants grant nothing.
        assert_eq!(
            a(json!({"scope": "other:write whizardx:read READ writes"})),
            Some(Access::default())
        );
        assert_eq!(a(json!({"scope": 3})), Some(Access::default()));
        assert_eq!(a(json!({})), None);
        let id = identity_from_claims(
            &p,
            &claims(json!({"sub": "agent", "tenant": "t"})),
            AuthMethod::Session,
            Access {
                read: true,
                write: false,
            },
        );
        assert!(id.access.read && !id.access.write);
        assert_eq!(id.name, "agent");
    }

    #[test]
    fn names() {
        assert_eq!(
            name_from_claims(&claims(json!({"sub": "s", "preferred_username": "alice"}))),
            "alice"
        );
        assert_eq!(name_from_claims(&claims(json!({"sub": "s"}))), "s");
        assert_eq!(name_from_claims(&claims(json!({"client_id": "c"}))), "c");
        assert_eq!(name_from_claims(&claims(json!({}))), "unknown");
        assert_eq!(name_from_claims(&claims(json!({"sub": "a\nb"}))), "ab");
    }

    #[test]
    fn jwks_keeps_only_signature_keys_and_pins_algorithms() {
        let body = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "rsa", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-ps", "alg": "PS256", "use": "sig", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-hs", "alg": "HS256", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird", "kid": "weird"},
            "not an object"
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, vec!["rsa", "rsa-ps", "ec", "ed"]);
        assert!(keys[0].algorithms.contains(&Algorithm::RS256));
        assert!(keys[0].algorithms.contains(&Algorithm::PS256));
        assert_eq!(keys[1].algorithms, vec![Algorithm::PS256]);
        assert_eq!(keys[2].algorithms, vec![Algorithm::ES256]);
        assert_eq!(keys[3].algorithms, vec![Algorithm::EdDSA]);
        for k in &keys {
            assert!(!k
                .algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)));
        }
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn www_authenticate_values() {
        assert_eq!(www_authenticate(None), "Bearer realm=\"whizard\"");
        assert_eq!(
            www_authenticate(Some(&AuthError::InvalidToken("token expired"))),
            "Bearer realm=\"whizard\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(
            www_authenticate(Some(&AuthError::Unavailable)),
            "Bearer realm=\"whizard\""
        );
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = http::HeaderMap::new();
        assert!(bearer_token(&h).is_none());
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(bearer_token(&h).is_none());
        h.insert("authorization", "bearer  abc.def.ghi ".parse().unwrap());
        assert_eq!(bearer_token(&h).unwrap().unwrap(), "abc.def.ghi");
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert!(bearer_token(&h).unwrap().is_err());
    }

    #[test]
    fn issuer_matching_tolerates_a_trailing_slash_only() {
        let i = Issuer::new(provider(), test_client(), OidcOptions::default());
        assert!(i.matches("http://idp.test"));
        assert!(i.matches("http://idp.test/"));
        assert!(!i.matches("http://idp.test//"));
        assert!(!i.matches("http://idp.test/x"));
        assert!(!i.matches("http://idp.tes"));
    }

    /// Marks an issuer's keys as loaded, so that carrying them over is visible.
    fn loaded(issuer: &Issuer) -> Arc<KeySet> {
        issuer.keys.store(Arc::new(KeySet {
            keys: Vec::new(),
            discovery: Some(Arc::new(Discovery {
                issuer: issuer.issuer().to_string(),
                jwks_uri: format!("{}/jwks", issuer.issuer()),
                authorization_endpoint: None,
                token_endpoint: None,
                revocation_endpoint: None,
                end_session_endpoint: None,
                token_endpoint_auth_methods_supported: None,
            })),
        }));
        issuer.keys.load_full()
    }

    #[test]
    fn a_reload_keeps_the_keys_of_unchanged_providers() {
        let http = test_client();
        let mut other = provider();
        other.issuer = "http://other.test".into();
        let old = OidcAuth::new(&[provider(), other.clone()], http.clone());
        let kept = loaded(&old.issuers()[0]);
        loaded(&old.issuers()[1]);
        let mut changed = other.clone();
        changed.audience = "x".into();
        let new = OidcAuth::with_options(
            &[provider(), changed],
            http,
            OidcOptions::default(),
            Some(&old),
        );
        assert!(Arc::ptr_eq(&kept, &new.issuers()[0].keys.load_full()));
        assert!(new.issuers()[1].keys.load().discovery.is_none());
        assert_eq!(new.issuers()[1].config().audience, "x");
        assert!(new.login_issuer().is_none());
        assert!(new.issuer_for("http://other.test/").is_some());
    }

    #[test]
    fn a_reload_that_changes_a_providers_tls_drops_its_keys_and_client() {
        let configs = |ca: Option<&str>| {
            vec![OidcConfig {
                provider: provider(),
                tls: OidcTls {
                    ca_file: ca.map(std::path::PathBuf::from),
                    ..OidcTls::default()
                },
            }]
        };
        let mut built = Vec::new();
        let mut client = |i: usize, c: &OidcConfig| {
            built.push((i, c.tls.ca_file.clone()));
            Ok::<_, std::convert::Infallible>(test_client())
        };
        let opts = OidcOptions::default;
        let old = OidcAuth::for_config(&configs(Some("a.crt")), opts(), None, &mut client).unwrap();
        let kept = loaded(&old.issuers()[0]);
        // Same trust: keys carried over, but a new client (the file may have been replaced).
        let same =
            OidcAuth::for_config(&configs(Some("a.crt")), opts(), Some(&old), &mut client).unwrap();
        assert!(Arc::ptr_eq(&kept, &same.issuers()[0].keys.load_full()));
        // Other trust: the keys were fetched under a CA that is no longer trusted.
        let other = OidcAuth::for_config(&configs(Some("b.crt")), opts(), Some(&same), &mut client)
            .unwrap();
        assert!(other.issuers()[0].keys.load().discovery.is_none());
        assert_eq!(
            built,
            vec![
                (0, Some("a.crt".into())),
                (0, Some("a.crt".into())),
                (0, Some("b.crt".into()))
            ]
        );
    }

    #[test]
    fn a_client_that_cannot_be_built_fails_the_whole_set() {
        let configs = vec![
            OidcConfig {
                provider: provider(),
                tls: OidcTls::default(),
            };
            2
        ];
        let err = OidcAuth::for_config(&configs, OidcOptions::default(), None, |i, _| {
            if i == 1 {
                Err(format!("oidc[{i}]: no client"))
            } else {
                Ok(test_client())
            }
        });
        assert_eq!(err.err().as_deref(), Some("oidc[1]: no client"));
    }

    #[test]
    fn discovery_endpoints_must_be_https_off_loopback() {
        for ok in [
            "https://idp.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.8.0.1/jwks",
            "http://[::1]:9/jwks",
            "http://localhost/jwks",
        ] {
            assert!(check_endpoint("jwks_uri", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://idp.example/jwks",
            "not a url",
        ] {
            assert!(
                matches!(check_endpoint("jwks_uri", bad), Err(FetchError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn foreign_and_malformed_tokens_fail_without_network() {
        let auth = OidcAuth::new(&[provider()], test_client());
        for (token, want) in [
            ("abc", "malformed token"),
            ("a.b.c", "malformed token"),
            // {"alg":"none"} . {"iss":"http://idp.test"}
            (
                "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vaWRwLnRlc3QifQ.",
                "algorithm not allowed",
            ),
            // {"alg":"RS256"} . {"iss":"http://evil.test"}
            (
                "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwOi8vZXZpbC50ZXN0In0.c2ln",
                "issuer not accepted",
            ),
            // {"alg":"HS256"} . {"iss":"http://idp.test"}
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwOi8vaWRwLnRlc3QifQ.c2ln",
                "algorithm not allowed",
            ),
        ] {
            assert_eq!(
                auth.verify_token(token).await.unwrap_err(),
                AuthError::InvalidToken(want),
                "{token}"
            );
        }
        // `crit`, whatever it lists (even nothing, even not a list), for a configured issuer:
        // refused before any key is looked for.
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let payload = b64(json!({"iss": "http://idp.test", "tenant": "team-a"}));
        for crit in [json!(["b64"]), json!(["exp"]), json!([]), json!("b64")] {
            let head = b64(json!({"alg": "RS256", "kid": "k", "b64": false, "crit": crit}));
            let token = format!("{head}.{payload}.c2ln");
            let err = auth.verify_token(&token).await.unwrap_err();
            assert_eq!(
                err,
                AuthError::InvalidToken("critical header parameter not supported"),
                "{crit}"
            );
            assert_eq!(err.reason(), "invalid_token");
        }
        for (token, want) in [
            // {"alg":"RS256","crit":["x"]} with an unparsable payload: still the header's fault.
            (
                "eyJhbGciOiJSUzI1NiIsImNyaXQiOlsieCJdfQ.e30.c2ln",
                "critical header parameter not supported",
            ),
        ] {
            assert_eq!(
                auth.verify_token(token).await.unwrap_err(),
                AuthError::InvalidToken(want),
                "{token}"
            );
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(auth.verify_token(&long).await.is_err());
    }
}
