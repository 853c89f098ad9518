//! Authentication: who is calling. One trait, one module per method.
//!
//! An [`Authenticator`] looks at the request headers and either does not apply (no credentials
//! of its kind), authenticates an [`Identity`], or fails with an [`AuthError`].

pub mod basic;
pub mod jwt_crypto;
pub mod login;
pub mod oidc;
pub mod password;
pub mod session;
pub mod throttle;

use crate::config::{Access, WriteRouting};
use async_trait::async_trait;
use std::sync::Arc;

/// A caller the gateway has authenticated, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// Tenants this identity may act for, sorted and deduplicated.
    pub tenants: Vec<String>,
    pub access: Access,
    pub method: AuthMethod,
    /// How its writes that name no tenant are routed (`users[].write_routing`; `Named` for
    /// every other kind of identity).
    pub write_routing: WriteRouting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Bearer,
    Session,
    ClientCertificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::Bearer => "bearer",
            AuthMethod::Session => "session",
            AuthMethod::ClientCertificate => "client_certificate",
        }
    }
}

/// Why credentials were refused. `reason()` is the `reason` label of `whizard_auth_failures_total`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("credentials could not be verified right now")]
    Unavailable,
    /// A bearer token was refused; the text is a fixed description for `error_description`.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A session cookie was refused (tampered, expired, logged out).
    #[error("invalid session: {0}")]
    InvalidSession(&'static str),
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::Unavailable => "unavailable",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::InvalidSession(_) => "invalid_session",
        }
    }
}

pub enum AuthOutcome {
    /// This method found no credentials of its kind in the request.
    NotApplicable,
    Authenticated(Arc<Identity>),
    Failed(AuthError),
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    fn method(&self) -> AuthMethod;
    async fn authenticate(&self, headers: &http::HeaderMap) -> AuthOutcome;
}
