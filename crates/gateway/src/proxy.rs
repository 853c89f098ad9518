//! The request pipeline on pingora: route → authenticate → tenant → enforce → upstream.
//!
//! GET reads go through pingora's proxy path (URL rewritten in `upstream_request_filter`).
//! Requests whose body must be inspected (writes, POST forms) are read whole and validated in
//! `request_filter`, then forwarded by `forward`, so a bad body never reaches an upstream.

use super::forward::{self, StreamError, UpstreamFailure};
use super::h1_fields::HOP_BY_HOP;
use super::params::{ParamError, Params, RewriteError};
use super::request::{insert_tenant_header, over_limit, read_body};
use super::request_id::{self, REQUEST_ID, REQUEST_ID_FIELD};
use super::respond::{self, Refusal};
use super::routes::{self, Class};
use super::runtime::{ActiveRequest, Runtime, RuntimeHere, State};
use super::upstream::KeptPeer;
use super::{contract, filtered, login, write};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use whizard_core::auth::throttle::Verdict;
use whizard_core::auth::{AuthError, AuthMethod, AuthOutcome, Authenticator, Identity};
use whizard_core::config::{QueryKind, Upstream, WriteRouting};
use whizard_core::enforcement::EnforceError;
use whizard_core::metrics::metrics;
use whizard_core::tenancy::{self, Operation, TenancyError};

pub struct Gateway {
    state: Arc<State>,
    /// The metrics listener (`listen.metrics`): `/metrics`, `/-/reload` and the health
    /// routes, nothing else. The tenant listeners never answer those two.
    admin: bool,
}

impl Gateway {
    /// The gateway of a tenant-facing listener.
    pub fn new(state: Arc<State>) -> Self {
        Gateway {
            state,
            admin: false,
        }
    }
    /// The gateway of the metrics listener.
    pub fn admin(state: Arc<State>) -> Self {
        Gateway { state, admin: true }
    }
    /// `server.short_way` of the current config.
    pub fn short_way_enabled(&self) -> bool {
        self.state.runtime.load().config.server.short_way
    }
}

/// Which upstream a proxied request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    Query,
}

impl UpstreamKind {
    fn name(self) -> &'static str {
        match self {
            UpstreamKind::Query => "query",
        }
    }
    fn of(self, rt: &Runtime) -> &Upstream {
        match self {
            UpstreamKind::Query => &rt.config.upstreams.query,
        }
    }
}

pub struct Ctx {
    rt: Option<RuntimeHere>,
    start: Instant,
    route: &'static str,
    /// `tenant` label of the request metrics ("" before the tenant is known).
    tenant: String,
    upstream: Option<UpstreamKind>,
    /// The enforced target, taken by the upstream request filter.
    pub(super) uri: Option<http::Uri>,
    /// Concurrent-request slots held until the request ends.
    _inflight: Vec<whizard_core::limits::InflightGuard>,
    /// Counts the request as in flight for graceful shutdown.
    _active: Option<ActiveRequest>,
    identity: Option<Arc<Identity>>,
    /// The upstream the request went to, for the access log.
    upstream_name: &'static str,
    /// The client fields the proxied request keeps (the forwarding contract of its class).
    forwarded_fields: &'static [http::HeaderName],
    /// `Set-Cookie` of a browser session renewed by this request, sent with the answer.
    session_cookie: Option<String>,
}

impl Ctx {
    /// The client fields the proxied request keeps: the forwarding contract of its class.
    pub(super) fn forwarded_fields(&self) -> &'static [http::HeaderName] {
        self.forwarded_fields
    }

    /// When the request's processing began.
    pub(super) fn started(&self) -> Instant {
        self.start
    }

    /// `refusal` with the `Set-Cookie` of a session this request renewed: the new cookie goes
    /// back with whatever answer.
    fn with_session_cookie(&mut self, refusal: Refusal) -> Refusal {
        match self.session_cookie.take() {
            Some(cookie) => refusal.with_header("set-cookie", cookie),
            None => refusal,
        }
    }
}

/// Route fields as offsets into the path, so the session can be borrowed mutably afterwards.
struct Matched {
    class: Class,
    name: &'static str,
    tenant: Option<Range<usize>>,
    api: Range<usize>,
}

fn offsets(path: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - path.as_ptr() as usize;
    start..start + part.len()
}

const FORM: &str = "application/x-www-form-urlencoded";
/// Logged (never sent) when the client closed the connection before any answer.
const CLIENT_CLOSED: http::StatusCode = match http::StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => http::StatusCode::BAD_REQUEST,
};

/// The bodies of the engine's hooks, as inherent methods of the same names: the trait's
/// methods (boxed futures, by `async_trait`) call them, and the short way calls them directly,
/// so that their futures are part of its own instead of each being boxed (allocated and
/// copied) per request.
impl Gateway {
    pub(super) async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<bool> {
        let rt = self.state.runtime_here();
        ctx.rt = Some(rt.clone());
        // Keep the client's request id when it is sane, else make one; it travels upstream
        // with the request and comes back in the answer.
        let mut ids = session
            .req_header()
            .headers
            .get_all(REQUEST_ID_FIELD)
            .iter();
        // A sane first id is kept; it is written again only to drop any further ones.
        let replacement = match (ids.next(), ids.next()) {
            (Some(id), more) if crate::access_log::is_sane_request_id(id.as_bytes()) => {
                more.map(|_| id.clone())
            }
            _ => Some(crate::access_log::new_request_id()),
        };
        if let Some(id) = replacement {
            session.req_header_mut().insert_header(REQUEST_ID, id)?;
        }
        match self.handle(session, ctx, &rt).await {
            Ok(proxy) => Ok(proxy),
            Err(refusal) => {
                respond::refuse(session, &ctx.with_session_cookie(refusal)).await?;
                Ok(true)
            }
        }
    }

    /// The engine's `upstream_peer`: this thread's kept peer (`upstream::Peers`), which the
    /// short way uses as it is and the engine takes a copy of.
    pub(super) async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Arc<KeptPeer>> {
        let (Some(rt), Some(kind)) = (ctx.rt.as_ref(), ctx.upstream) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        let up = kind.of(rt);
        let Some(addr) = rt.peers.address(up, ctx.start).await else {
            metrics()
                .upstream_errors
                .with_label_values(&[kind.name(), "resolve"])
                .inc();
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "cannot resolve the upstream host",
            ));
        };
        rt.peers.at(kind.name(), addr, || {
            super::upstream::peer(&rt.config, up, addr)
        })
    }

    pub(super) async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let (Some(rt), Some(kind)) = (ctx.rt.as_ref(), ctx.upstream) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        // Cloned, not taken: pingora calls this filter again, on a fresh copy of the client's
        // request, when it retries on a new connection, and the retry must carry the enforced
        // target too (taking it once sent the client's own query on the retry).
        if let Some(uri) = &ctx.uri {
            req.set_uri(uri.clone());
        }
        // Credentials, cookies, the client's tenant headers and anything else not in the
        // contract stay behind; the gateway's own tenant header and Host are set below.
        contract::retain(req, ctx.forwarded_fields);
        req.insert_header(rt.tenant_header.clone(), ctx.tenant.as_str())?;
        req.insert_header(http::header::HOST, kind.of(rt).host_header.clone())?;
        Ok(())
    }

    pub(super) async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        let upstream = ctx.upstream.map(|k| k.name()).unwrap_or("upstream");
        // The client's doing comes first, whatever the error's type: pingora reports a client
        // that sends data while its request is answered (pipelining) as a `ConnectError`. It is
        // no upstream failure, and is logged 499.
        let failure = match e.etype() {
            _ if matches!(e.esource(), pingora::ErrorSource::Downstream) => None,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Some(UpstreamFailure::Timeout)
            }
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => Some(UpstreamFailure::Connect),
            _ if matches!(e.esource(), pingora::ErrorSource::Upstream) => {
                Some(UpstreamFailure::Protocol)
            }
            _ => None,
        };
        let code = match failure {
            Some(f) => {
                metrics()
                    .upstream_errors
                    .with_label_values(&[upstream, f.kind()])
                    .inc();
                if session.response_written().is_none() {
                    let r = ctx.with_session_cookie(f.refusal(upstream));
                    let _ = respond::refuse(session, &r).await;
                }
                f.refusal(upstream).status
            }
            None => match e.esource() {
                pingora::ErrorSource::Downstream => 0,
                _ => {
                    if session.response_written().is_none() {
                        let r = Refusal::new(502, "the gateway could not complete the request");
                        let _ = respond::refuse(session, &ctx.with_session_cookie(r)).await;
                    }
                    502
                }
            },
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    pub(super) async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // Nothing answered: a client that went away is 499 (nginx's convention), so that
        // disconnects do not count as upstream failures; anything else is 502.
        let unanswered = match e.map(|e| e.esource()) {
            Some(pingora::ErrorSource::Downstream) => CLIENT_CLOSED,
            _ => http::StatusCode::BAD_GATEWAY,
        };
        let status = session
            .response_written()
            .map(|r| r.status)
            .unwrap_or(unanswered);
        let elapsed = ctx.start.elapsed().as_secs_f64();
        metrics().request_done(&ctx.tenant, ctx.route, status, elapsed);
        let Some(rt) = ctx.rt.as_ref() else { return };
        if !rt.config.logging.access_log || self.admin {
            return;
        }
        let req = session.req_header();
        let client = session.client_addr().and_then(|a| a.as_inet()).copied();
        crate::access_log::log(
            rt.config.logging.format,
            &crate::access_log::Entry {
                request_id: req
                    .headers
                    .get(&REQUEST_ID_FIELD)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                method: req.method.as_str(),
                route: ctx.route,
                tenant: &ctx.tenant,
                user: ctx.identity.as_ref().map(|i| i.name.as_str()).unwrap_or(""),
                status: status.as_u16(),
                bytes: session.body_bytes_sent(),
                duration_seconds: elapsed,
                upstream: ctx.upstream_name,
                client,
            },
        );
    }

    pub(super) async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        strip_hop_by_hop(resp);
        request_id::echo_request_id(session, resp)?;
        if let Some(cookie) = ctx.session_cookie.take() {
            resp.append_header(http::header::SET_COOKIE, cookie)?;
        }
        Ok(())
    }
}

/// The hooks pingora's engine runs. The short way (`short_way/mod.rs`) runs the same ones, in
/// the same order, for plain GETs; its `STEPS` lists them, and a test fails when a hook here is
/// not one of them.
#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// No downstream modules: pingora's default is a response-compression module that is
    /// disabled yet still built and consulted on every request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rt: None,
            start: Instant::now(),
            route: "unmatched",
            tenant: String::new(),
            upstream: None,
            uri: None,
            _inflight: Vec::new(),
            _active: Some(self.state.active_request()),
            identity: None,
            upstream_name: "",
            forwarded_fields: &contract::READ,
            session_cookie: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        Gateway::request_filter(self, session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let kept = Gateway::upstream_peer(self, session, ctx).await?;
        Ok(Box::new(kept.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        Gateway::upstream_request_filter(self, session, req, ctx).await
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        Gateway::fail_to_proxy(self, session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        Gateway::logging(self, session, e, ctx).await
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        Gateway::response_filter(self, session, resp, ctx).await
    }
}

/// The upstream's hop-by-hop fields stay behind ([`HOP_BY_HOP`], RFC 9110 §7.6.1): those its
/// `Connection` names and the listed ones, except the framing (`Transfer-Encoding`, and a
/// nominated `Content-Length`), which the server session rewrites for the client's
/// connection. An answer without `Connection` (the usual one) costs one lookup and a pass over
/// its fields, and no allocation.
fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    let framing = [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
    ];
    if resp.headers.contains_key(http::header::CONNECTION) {
        let nominated = super::h1_fields::connection_nominated(&resp.headers);
        resp.remove_header(&http::header::CONNECTION);
        for name in nominated.iter().filter(|n| !framing.contains(n)) {
            resp.remove_header(name);
        }
    }
    // One pass over the answer's fields (a handful), each compared with the list, rather than
    // a hashed lookup per listed name.
    let listed = |n: &&http::HeaderName| HOP_BY_HOP.contains(n) && !framing.contains(n);
    while let Some(name) = resp.headers.keys().find(listed).cloned() {
        resp.remove_header(&name);
    }
}

/// The user name of a Basic `Authorization` header, decoded into `buf`.
fn basic_user<'b>(
    headers: &http::HeaderMap,
    buf: &'b mut [u8; whizard_core::auth::basic::MAX_CREDENTIALS],
) -> Option<&'b str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| whizard_core::auth::basic::parse_basic(v.as_bytes(), buf))
        .and_then(Result::ok)
        .and_then(|(u, _)| std::str::from_utf8(u).ok())
}

impl Gateway {
    /// Handles a request up to the point where pingora proxies it (`Ok(false)`) or an answer
    /// has been written (`Ok(true)`). `Err`: refuse with that answer.
    async fn handle(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rt: &Arc<Runtime>,
    ) -> Result<bool, Refusal> {
        let path = session.req_header().uri.path();
        let Some(route) = routes::route(path) else {
            return Err(Refusal::new(404, "not found"));
        };
        let matched = Matched {
            class: route.class,
            name: route.name,
            tenant: route.tenant.map(|t| offsets(path, t)),
            api: offsets(path, route.api_path),
        };
        ctx.route = matched.name;

        match matched.class {
            Class::Healthy => {
                return self
                    .local(session, 200, "text/plain", Bytes::from_static(b"OK\n"))
                    .await
            }
            Class::Ready => {
                return self
                    .local(session, 200, "text/plain", Bytes::from_static(b"OK\n"))
                    .await
            }
            Class::Metrics if self.admin => {
                let body = Bytes::from(whizard_core::metrics::render());
                return self
                    .local(
                        session,
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        body,
                    )
                    .await;
            }
            Class::Reload if self.admin => return self.reload(session).await,
            _ if self.admin => return Err(Refusal::new(404, "not found")),
            // Every tenant's id and traffic, and a config reload: never on a listener that
            // tenants reach, whoever the client seems to be (behind a local proxy or a sidecar
            // every client is loopback).
            Class::Metrics | Class::Reload => {
                return Err(Refusal::new(
                    404,
                    "not found: /metrics and /-/reload are served only on the metrics listener (listen.metrics)",
                ))
            }
            Class::Login | Class::Callback | Class::Logout => {
                // Boxed, as are the writes, the filtered routes and POST reads below: inline,
                // their state would be room in every request's future, which the short way
                // moves into the heap per request (boxing them took `request_filter`'s future
                // from 3,144 to 1,680 bytes in a debug build).
                Box::pin(login::handle(session, rt, matched.class)).await?;
                return Ok(true);
            }
            Class::Ui if !rt.config.ui.enabled => return Err(Refusal::new(404, "not found")),
            _ => {}
        }

        let identity = admit(
            self.authenticate(session, rt, &mut ctx.session_cookie)
                .await?,
            rt,
        )?;
        ctx.identity = Some(identity.clone());
        if identity.method == AuthMethod::Session {
            cookie_request_allowed(session, matched.class)?;
        }
        // Until the scope is known, refusals are counted under the identity's tenants (joined
        // only for a refusal: it is a string per request).
        let unscoped = |refusal: Refusal, ctx: &mut Ctx| {
            ctx.tenant = identity.tenants.join("|");
            refusal
        };
        let method = session.req_header().method.clone();
        let op = match matched.class {
            Class::RemoteWrite | Class::Otlp => Operation::Write,
            // Creating and expiring silences changes state: it takes write access.
            Class::AmSilences if method == http::Method::POST => Operation::Write,
            Class::AmSilence if method == http::Method::DELETE => Operation::Write,
            _ => Operation::Read,
        };
        let header_name = &rt.config.tenancy.header;
        let header_tenant = {
            let mut values = session
                .req_header()
                .headers
                .get_all(&rt.tenant_header_name)
                .iter();
            let first = values.next();
            if values.next().is_some() {
                return Err(unscoped(
                    Refusal::new(
                        400,
                        format!("the {header_name} header is given more than once"),
                    ),
                    ctx,
                ));
            }
            match first.map(|v| v.to_str()) {
                None => None,
                Some(Ok(v)) => Some(v.trim().to_string()),
                Some(Err(_)) => {
                    return Err(unscoped(
                        Refusal::new(400, format!("the {header_name} header is not valid text")),
                        ctx,
                    ))
                }
            }
        };
        let path = session.req_header().uri.path();
        let path_tenant = matched.tenant.clone().map(|r| &path[r]);
        // A writer routed by label that names no tenant: its series name their tenants.
        if let (Class::RemoteWrite, None, None, WriteRouting::ByLabel { default_tenant }) = (
            matched.class,
            path_tenant,
            header_tenant.as_deref(),
            &identity.write_routing,
        ) {
            if !identity.access.write {
                return Err(unscoped(
                    Refusal::new(403, TenancyError::MissingAccess("write").to_string()),
                    ctx,
                ));
            }
            ctx.tenant = identity.tenants.join("|");
            ctx.upstream_name = "receive";
            require_post(session)?;
            Box::pin(write::remote_write_by_label(
                session,
                rt,
                &identity,
                default_tenant.as_deref(),
            ))
            .await?;
            return Ok(true);
        }
        let scope = tenancy::resolve(
            &identity,
            path_tenant,
            header_tenant.as_deref(),
            header_name,
            op,
        )
        .map_err(|e| unscoped(Refusal::new(e.status(), e.to_string()), ctx))?;
        ctx.tenant = scope.header_value();
        for tenant in scope.tenants() {
            match rt.limiters.admit_request(tenant) {
                Ok(Some(guard)) => ctx._inflight.push(guard),
                Ok(None) => {}
                Err(over) => return Err(over_limit(&ctx.tenant, &over)),
            }
        }
        let api_path = path[matched.api.clone()].to_string();

        if matched.name == "/api/v1/status/tsdb"
            && rt.config.upstreams.query_kind == QueryKind::Prometheus
        {
            return Err(Refusal::new(
                403,
                "/api/v1/status/tsdb is not available to tenants: Prometheus ignores match[] on it (upstreams.query_kind)",
            ));
        }
        ctx.upstream_name = match matched.class {
            Class::RemoteWrite => "receive",
            Class::Otlp => "otlp",
            Class::Promql | Class::MatchSelectors | Class::Passthrough => "query",
            Class::Rules | Class::Alerts => "rules",
            Class::AmAlerts | Class::AmAlertGroups | Class::AmSilences | Class::AmSilence => {
                "alertmanager"
            }
            _ => "",
        };
        match matched.class {
            Class::Denied => Err(Refusal::new(
                403,
                format!("{} is not available to tenants", matched.name),
            )),
            Class::RemoteWrite => {
                require_post(session)?;
                let tenant = scope.single().unwrap_or_default().to_string();
                Box::pin(write::remote_write(session, rt, &tenant)).await?;
                Ok(true)
            }
            Class::Otlp => {
                require_post(session)?;
                let tenant = scope.single().unwrap_or_default().to_string();
                Box::pin(write::otlp(session, rt, &tenant)).await?;
                Ok(true)
            }
            Class::Promql | Class::MatchSelectors | Class::Passthrough => {
                self.read(session, ctx, rt, matched.class, &api_path, scope.tenants())
                    .await
            }
            Class::Rules
            | Class::Alerts
            | Class::AmAlerts
            | Class::AmAlertGroups
            | Class::AmSilences
            | Class::AmSilence => {
                let matcher = rt.matcher(&ctx.tenant, scope.tenants())?;
                let req = filtered::Request {
                    class: matched.class,
                    api_path: &api_path,
                    method,
                    matcher: &matcher,
                    tenant_header: &ctx.tenant,
                    request_id: request_id::request_id(session).cloned(),
                    set_cookie: ctx.session_cookie.as_deref(),
                };
                Box::pin(filtered::handle(session, rt, req)).await?;
                Ok(true)
            }
            Class::Ui => {
                // The UI's pages and assets carry no tenant data; its API calls are enforced
                // like any other read. The path goes to the query upstream; the query string
                // does not (the pages read theirs in the browser).
                let up = &rt.config.upstreams.query;
                let uri = format!("{}{}", up.path, session.req_header().uri.path());
                ctx.uri = Some(
                    uri.parse()
                        .map_err(|_| Refusal::new(400, "invalid request URI"))?,
                );
                ctx.upstream = Some(UpstreamKind::Query);
                ctx.upstream_name = "query";
                ctx.forwarded_fields = &contract::UI;
                Ok(false)
            }
            Class::Healthy
            | Class::Ready
            | Class::Metrics
            | Class::Reload
            | Class::Login
            | Class::Callback
            | Class::Logout => Err(Refusal::new(404, "not found")),
        }
    }

    async fn local(
        &self,
        session: &mut Session,
        status: u16,
        ct: &str,
        body: Bytes,
    ) -> Result<bool, Refusal> {
        respond::send(session, status, ct, &[], body)
            .await
            .map_err(|e| Refusal::new(400, e.to_string()))?;
        Ok(true)
    }

    async fn reload(&self, session: &mut Session) -> Result<bool, Refusal> {
        if session.req_header().method != http::Method::POST {
            return Err(Refusal::new(405, "use POST /-/reload").with_header("allow", "POST"));
        }
        match self.state.reload() {
            Ok(()) => {
                self.local(
                    session,
                    200,
                    "text/plain",
                    Bytes::from_static(b"config reloaded\n"),
                )
                .await
            }
            Err(e) => Err(Refusal::new(
                400,
                format!("config reload refused, previous config kept: {e}"),
            )),
        }
    }

    /// Runs the authenticators in turn (Basic, bearer token, browser session); the first that
    /// finds its kind of credentials decides. Repeated failures are throttled.
    /// `renewed_cookie` receives the `Set-Cookie` of a session renewed on the way.
    async fn authenticate(
        &self,
        session: &mut Session,
        rt: &Runtime,
        renewed_cookie: &mut Option<String>,
    ) -> Result<Arc<Identity>, Refusal> {
        // A verified client certificate naming a user comes first (no password needed).
        if let Some(identity) = super::tls::client_certificate_identity(session, &rt.config) {
            return Ok(identity);
        }
        // Credentials verified before are never delayed or refused by the throttle: an attack
        // on this user, or from this user's address (a NAT), must not lock the user out.
        if let Some(identity) = rt.basic.cached(&session.req_header().headers) {
            return Ok(identity);
        }
        // Boxed: a verification (throttle, password hash, token, login session) holds
        // kilobytes of state and is rare once credentials are cached; inline, every request's
        // future would carry that room, and copy it each time the future is boxed.
        Box::pin(self.verify(session, rt, renewed_cookie)).await
    }

    /// [`Gateway::authenticate`] for credentials not in the cache: verified under the throttle,
    /// by each configured method in turn.
    async fn verify(
        &self,
        session: &mut Session,
        rt: &Runtime,
        renewed_cookie: &mut Option<String>,
    ) -> Result<Arc<Identity>, Refusal> {
        // A burst of one new credential asks the throttle once: the others wait for that
        // verification and are then answered from the cache.
        let _lead = rt
            .basic
            .lead_verification(&session.req_header().headers)
            .await;
        if let Some(identity) = rt.basic.cached(&session.req_header().headers) {
            return Ok(identity);
        }
        let m = metrics();
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let mut buf = [0u8; whizard_core::auth::basic::MAX_CREDENTIALS];
        let (headers, user_buf) = (&session.req_header().headers, &mut buf);
        let user = move || {
            // Moving the buffer borrow in makes the closure FnOnce, so the name can borrow it.
            let buf = user_buf;
            basic_user(headers, buf)
        };
        // Kept until the answer is decided (after any failure is recorded): counts a password
        // attempt in flight and holds one of its address's verification slots.
        let _attempt = match self.state.throttle.admit(ip, user).await {
            Verdict::Admitted(attempt) => attempt,
            Verdict::Refused(refused) => {
                return Err(Refusal::new(429, refused.message())
                    .with_header("retry-after", refused.retry_after.to_string()));
            }
        };
        let headers = &session.req_header().headers;
        let chain: [Option<&dyn Authenticator>; 2] = [
            Some(&rt.basic),
            rt.oidc.as_deref().map(|o| o as &dyn Authenticator),
        ];
        let mut failure = None;
        for a in chain.into_iter().flatten() {
            match a.authenticate(headers).await {
                AuthOutcome::NotApplicable => continue,
                AuthOutcome::Authenticated(identity) => return Ok(identity),
                AuthOutcome::Failed(e) => {
                    failure = Some((a.method(), e));
                    break;
                }
            }
        }
        // A session cookie only through the current login flow: it ends with the provider's
        // config, and its tenants and access are derived under the current config.
        if let (None, Some(flow)) = (&failure, &rt.login) {
            match flow.session(headers, login::is_https(session)).await {
                Some(Ok(used)) => {
                    *renewed_cookie = used.set_cookie;
                    return Ok(Arc::new(used.identity));
                }
                Some(Err(e)) => failure = Some((AuthMethod::Session, e)),
                None => {}
            }
        }
        let browser_login = rt.login.is_some() && login::is_browser(session);
        let Some((method, e)) = failure else {
            m.auth_failures
                .with_label_values(&["none", "missing"])
                .inc();
            if browser_login {
                return Err(login::to_login(session));
            }
            return Err(self.challenge(rt, None, "authentication required"));
        };
        m.auth_failures
            .with_label_values(&[method.as_str(), e.reason()])
            .inc();
        match (&e, method) {
            (AuthError::Unavailable, _) => Err(Refusal::new(503, e.to_string())),
            (_, AuthMethod::Session) if browser_login => Err(login::to_login(session)),
            (_, AuthMethod::Bearer) => {
                self.state.throttle.failed(ip, None);
                Err(self.challenge(rt, Some(&e), &e.to_string()))
            }
            _ => {
                let mut buf = [0u8; whizard_core::auth::basic::MAX_CREDENTIALS];
                let user = basic_user(&session.req_header().headers, &mut buf);
                self.state.throttle.failed(ip, user);
                Err(self.challenge(rt, None, &e.to_string()))
            }
        }
    }

    /// A 401 with the challenges of every configured method.
    fn challenge(&self, rt: &Runtime, bearer_error: Option<&AuthError>, message: &str) -> Refusal {
        let mut r =
            Refusal::new(401, message).with_header("www-authenticate", "Basic realm=\"whizard\"");
        if rt.oidc.is_some() {
            let value = whizard_core::auth::oidc::www_authenticate(bearer_error);
            r = r.with_header(
                "www-authenticate",
                value.to_str().unwrap_or("Bearer").to_string(),
            );
        }
        r
    }

    async fn read(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        rt: &Arc<Runtime>,
        class: Class,
        api_path: &str,
        tenants: &[String],
    ) -> Result<bool, Refusal> {
        let method = session.req_header().method.clone();
        let is_post = match method {
            http::Method::GET | http::Method::HEAD => false,
            http::Method::POST => true,
            _ => return Err(Refusal::new(405, "use GET or POST").with_header("allow", "GET, POST")),
        };
        let body = if is_post {
            let cap = rt
                .config
                .tenants
                .values()
                .map(|t| t.limits.max_body_bytes)
                .max()
                .unwrap_or(1 << 20);
            let body = Box::pin(read_body(session, cap.max(1 << 20))).await?;
            // A POST whose body is empty is a request without a body, whatever its
            // Content-Type says (vmalert sends `application/json` with its URL-only queries).
            if body.is_empty() {
                None
            } else {
                contract::require_media_type(&session.req_header().headers, FORM, "read requests")?;
                Some(body)
            }
        } else {
            if !session.is_body_empty() {
                return Err(Refusal::new(400, "GET requests must not carry a body"));
            }
            None
        };
        let mut params = Params::parse(session.req_header().uri.query(), body.as_deref())
            .map_err(|e| Refusal::new(400, e.to_string()))?;
        check_read_limits(rt, tenants, &params)?;
        // Pass-through routes carry no series data: only the enforcing ones need the matcher.
        let enforced = match class {
            Class::Promql => {
                let matcher = rt.matcher(&ctx.tenant, tenants)?;
                params.rewrite_query(|q| rt.enforce_query_cached(&ctx.tenant, q, &matcher))
            }
            Class::MatchSelectors => {
                let matcher = rt.matcher(&ctx.tenant, tenants)?;
                params.enforce_match_with(&matcher, |s| {
                    rt.enforce_match_cached(&ctx.tenant, s, &matcher)
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = enforced {
            let (status, reason) = match &e {
                RewriteError::Param(ParamError::MissingQuery) => (400, "missing_query"),
                RewriteError::Param(_) => (400, "params"),
                RewriteError::Enforce(e @ EnforceError::Disjoint { .. }) => (403, e.reason()),
                RewriteError::Enforce(e) => (400, e.reason()),
            };
            metrics()
                .enforcement_rejections
                .with_label_values(&[ctx.tenant.as_str(), reason])
                .inc();
            return Err(Refusal::new(status, e.to_string()));
        }
        let encoded = params.encode();
        let up = &rt.config.upstreams.query;
        if is_post {
            let url = format!("{}{api_path}", super::upstream::url(up));
            let mut headers = contract::copy(&session.req_header().headers, &contract::READ, 2);
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(FORM),
            );
            insert_tenant_header(&mut headers, &rt.tenant_header_name, &ctx.tenant)?;
            return match Box::pin(forward::stream(
                session,
                &rt.client,
                method,
                &url,
                headers,
                Bytes::from(encoded),
                ctx.session_cookie.as_deref(),
            ))
            .await
            {
                Ok(_) => Ok(true),
                Err(StreamError::Upstream(f)) => {
                    metrics()
                        .upstream_errors
                        .with_label_values(&["query", f.kind()])
                        .inc();
                    Err(f.refusal("query"))
                }
                Err(StreamError::Truncated(f)) => {
                    metrics()
                        .upstream_errors
                        .with_label_values(&["query", f.kind()])
                        .inc();
                    Ok(true)
                }
                Err(StreamError::Downstream(e)) => {
                    tracing::debug!(error = %e, "client went away while streaming a response");
                    Ok(true)
                }
            };
        }
        let mut uri = String::with_capacity(up.path.len() + api_path.len() + encoded.len() + 1);
        uri.push_str(&up.path);
        uri.push_str(api_path);
        if !encoded.is_empty() {
            uri.push('?');
            uri.push_str(&encoded);
        }
        // Parsed from the string's own buffer (`parse` would copy it first).
        ctx.uri = Some(
            http::Uri::from_maybe_shared(Bytes::from(uri.into_bytes()))
                .map_err(|_| Refusal::new(400, "the rewritten request URI is invalid"))?,
        );
        ctx.upstream = Some(UpstreamKind::Query);
        Ok(false)
    }
}

/// Whether a request authenticated by the browser session cookie alone may go on. A browser
/// sends the cookie with requests that other pages of the same site make (`SameSite=Lax` stops
/// only other sites; another port of the same host is the same site), so: machine routes
/// (remote write, OTLP) never take a cookie, and a request that can change state (any method
/// but GET, HEAD, OPTIONS) must come from the gateway's own origin — `Sec-Fetch-Site:
/// same-origin` when the browser sends it, else an `Origin` equal to this gateway's.
fn cookie_request_allowed(session: &Session, class: Class) -> Result<(), Refusal> {
    if matches!(class, Class::RemoteWrite | Class::Otlp) {
        return Err(Refusal::new(
            403,
            "writes take credentials of their own (Basic Auth, a bearer token, a client certificate), never a browser session cookie",
        ));
    }
    let req = session.req_header();
    if matches!(
        req.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return Ok(());
    }
    let site = req.headers.get("sec-fetch-site");
    let same_origin = match site {
        Some(site) => site.as_bytes() == b"same-origin",
        None => {
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            let host = req
                .headers
                .get(http::header::HOST)
                .map(|h| h.as_bytes())
                .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
            match (req.headers.get(http::header::ORIGIN), host) {
                (Some(origin), Some(host)) => {
                    let scheme: &[u8] = if tls { b"https://" } else { b"http://" };
                    let origin = origin.as_bytes();
                    origin.len() == scheme.len() + host.len()
                        && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                        && origin[scheme.len()..].eq_ignore_ascii_case(host)
                }
                _ => false,
            }
        }
    };
    if same_origin {
        Ok(())
    } else {
        Err(Refusal::new(
            403,
            "a browser session may change state only from the gateway's own pages: this request came from another origin (or said none)",
        ))
    }
}

/// The identity with only the tenants of the current config. Users are checked against it when
/// it loads, but tokens, sessions and group mappings name tenants the provider chose, maybe
/// before a reload removed them: a tenant the gateway does not know has no limits, and its
/// data may belong to whoever it is given to next. No allocation when nothing is taken away.
fn admit(identity: Arc<Identity>, rt: &Runtime) -> Result<Arc<Identity>, Refusal> {
    let configured = |t: &&String| rt.config.tenants.contains_key(t.as_str());
    if identity.tenants.iter().all(|t| configured(&t)) {
        return Ok(identity);
    }
    let tenants: Vec<String> = identity
        .tenants
        .iter()
        .filter(configured)
        .cloned()
        .collect();
    if tenants.is_empty() {
        metrics()
            .auth_failures
            .with_label_values(&[identity.method.as_str(), "unknown_tenant"])
            .inc();
        return Err(Refusal::new(
            403,
            format!(
                "none of the tenants of {} ({}) is configured on this gateway",
                identity.name,
                identity.tenants.join(", ")
            ),
        ));
    }
    Ok(Arc::new(Identity {
        tenants,
        ..(*identity).clone()
    }))
}

/// `max_query_length` and `max_query_range` of the strictest tenant of the scope.
fn check_read_limits(rt: &Runtime, tenants: &[String], params: &Params) -> Result<(), Refusal> {
    let limits = tenants
        .iter()
        .filter_map(|t| rt.config.tenants.get(t))
        .map(|t| t.limits);
    let min_nonzero = |a: f64, b: f64| {
        if a == 0.0 {
            b
        } else if b == 0.0 {
            a
        } else {
            a.min(b)
        }
    };
    let (max_len, max_range) = limits.fold((0u64, 0f64), |(l, r), x| {
        let l = if l == 0 {
            x.max_query_length
        } else if x.max_query_length == 0 {
            l
        } else {
            l.min(x.max_query_length)
        };
        (l, min_nonzero(r, x.max_query_range))
    });
    if max_len > 0 {
        if let Some(q) = params.get("query") {
            if q.len() as u64 > max_len {
                return Err(Refusal::new(
                    400,
                    format!(
                        "the query is {} bytes long, the limit is {max_len} (max_query_length)",
                        q.len()
                    ),
                ));
            }
        }
    }
    if max_range > 0.0 {
        let time = |k| {
            params.get(k).map(|v| {
                super::params::parse_time(v)
                    .ok_or_else(|| Refusal::new(400, format!("cannot parse {k}={v:?} as a time")))
            })
        };
        if let (Some(start), Some(end)) = (time("start"), time("end")) {
            let range = end? - start?;
            if range > max_range {
                return Err(Refusal::new(
                    400,
                    format!("the query covers {range:.0}s, the limit is {max_range:.0}s (max_query_range); shorten the time range"),
                ));
            }
        }
    }
    Ok(())
}

fn require_post(session: &Session) -> Result<(), Refusal> {
    if session.req_header().method == http::Method::POST {
        Ok(())
    } else {
        Err(Refusal::new(405, "writes use POST").with_header("allow", "POST"))
    }
}
