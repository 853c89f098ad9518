//! Browser login: `/oauth2/login`, `/oauth2/callback`, `/oauth2/logout`, and the redirect of a
//! browser without a session to the login.

use super::respond::{self, Refusal};
use super::routes::Class;
use super::runtime::Runtime;
use bytes::Bytes;
use pingora::proxy::Session;
use whizard_core::auth::login::{safe_return_path, Redirect};
use whizard_core::auth::session::Sessions;

/// True when the request came over TLS (cookies get `Secure`).
pub fn is_https(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// A browser navigating (GET, accepts HTML) rather than an API client.
pub fn is_browser(session: &Session) -> bool {
    session.req_header().method == http::Method::GET
        && session
            .req_header()
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

/// The refusal sending a browser to the login, back to where it was going afterwards.
pub fn to_login(session: &Session) -> Refusal {
    let uri = &session.req_header().uri;
    let back = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let rd: String =
        form_urlencoded::byte_serialize(safe_return_path(Some(back)).as_bytes()).collect();
    Refusal::new(302, "login required").with_header("location", format!("/oauth2/login?rd={rd}"))
}

async fn redirect(session: &mut Session, r: Redirect) -> Result<(), Refusal> {
    let mut headers = vec![("location", r.location)];
    headers.extend(r.set_cookies.into_iter().map(|c| ("set-cookie", c)));
    respond::send(
        session,
        302,
        "text/plain",
        &headers,
        Bytes::from_static(b"redirecting\n"),
    )
    .await
    .map_err(|e| Refusal::new(400, e.to_string()))
}

pub async fn handle(session: &mut Session, rt: &Runtime, class: Class) -> Result<(), Refusal> {
    let secure = is_https(session);
    let not_configured = || {
        Refusal::new(
            404,
            "browser login is not configured (oidc client_id, redirect_url and ui.cookie_secret)",
        )
    };
    match class {
        Class::Login => {
            let flow = rt.login.as_ref().ok_or_else(not_configured)?;
            let query = session.req_header().uri.query().map(str::to_string);
            match flow.start(query.as_deref(), secure).await {
                Ok(r) => redirect(session, r).await,
                Err(e) => Err(Refusal::new(e.status(), e.to_string())),
            }
        }
        Class::Callback => {
            let flow = rt.login.as_ref().ok_or_else(not_configured)?;
            let query = session.req_header().uri.query().map(str::to_string);
            let headers = session.req_header().headers.clone();
            match flow.callback(query.as_deref(), &headers, secure).await {
                Ok(r) => redirect(session, r).await,
                Err(e) => Err(Refusal::new(e.status(), e.to_string())
                    .with_header("set-cookie", flow.clear_flow_cookie(secure))),
            }
        }
        _ => {
            let clear = match &rt.login {
                Some(flow) => flow.logout(&session.req_header().headers, secure).await,
                None => Sessions::clear_cookie(secure),
            };
            respond::send(
                session,
                200,
                "text/html; charset=utf-8",
                &[("set-cookie", clear)],
                Bytes::from_static(b"<!doctype html><title>Logged out</title><p>You are logged out. <a href=\"/oauth2/login\">Log in again</a></p>\n"),
            )
            .await
            .map_err(|e| Refusal::new(400, e.to_string()))
        }
    }
}
