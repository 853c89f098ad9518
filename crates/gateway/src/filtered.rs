//! Routes whose answers the gateway filters (rules, alerts) and the Alertmanager API, where
//! silences are owned by the tenant whose equality matcher they carry. A posted silence goes
//! upstream as the gateway's exact model of it (`enforcement::silence`), never as sent.

use super::forward::{self, Answer};
use super::request::{insert_tenant_header, read_body};
use super::respond::Refusal;
use super::routes::Class;
use super::runtime::Runtime;
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;
use whizard_core::enforcement::response as filter;
use whizard_core::enforcement::silence::PostableSilence;
use whizard_core::enforcement::TenantMatcher;
use whizard_core::metrics::metrics;

/// Largest JSON body accepted for a new silence.
const MAX_SILENCE_BYTES: u64 = 1 << 20;

pub struct Request<'a> {
    pub class: Class,
    pub api_path: &'a str,
    pub method: http::Method,
    pub matcher: &'a TenantMatcher,
    /// Value of the upstream tenant header.
    pub tenant_header: &'a str,
    pub request_id: Option<http::HeaderValue>,
    /// `Set-Cookie` of a browser session renewed by this request, sent with the answer.
    pub set_cookie: Option<&'a str>,
}

/// The client's query string without the parameters the gateway owns.
fn client_params(session: &Session, owned: &[&str]) -> Vec<(String, String)> {
    session
        .req_header()
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| !owned.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

fn url(base: &str, path: &str, params: &[(String, String)]) -> String {
    let mut u = format!("{base}{path}");
    if !params.is_empty() {
        u.push('?');
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            s.append_pair(k, v);
        }
        u.push_str(&s.finish());
    }
    u
}

async fn call(
    req: &Request<'_>,
    rt: &Runtime,
    upstream: &'static str,
    method: http::Method,
    url: &str,
    tenant_header: &str,
    body: Option<Bytes>,
) -> Result<Answer, Refusal> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    if body.is_some() {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    insert_tenant_header(&mut headers, &rt.tenant_header_name, tenant_header)?;
    if let Some(id) = &req.request_id {
        headers.insert(super::request_id::REQUEST_ID_FIELD, id.clone());
    }
    forward::exchange(&rt.client, method, url, headers, body.unwrap_or_default())
        .await
        .map_err(|f| {
            metrics()
                .upstream_errors
                .with_label_values(&[upstream, f.kind()])
                .inc();
            f.refusal(upstream)
        })
}

fn json_of(answer: &Answer) -> Result<Value, Refusal> {
    serde_json::from_slice(&answer.body).map_err(|_| {
        Refusal::new(
            502,
            "the upstream answered with invalid JSON; nothing is passed on unfiltered",
        )
    })
}

/// Sends `value` to the client with the upstream's status.
async fn relay_json(
    session: &mut Session,
    req: &Request<'_>,
    status: u16,
    value: &Value,
) -> Result<(), Refusal> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let answer = Answer {
        status,
        headers,
        body: Bytes::from(value.to_string()),
    };
    relay(session, req, answer).await
}

/// Sends an answer to the client, with the renewed session cookie if any. A non-2xx upstream
/// answer is passed on as it is (errors carry no tenant data worth filtering, and hiding them
/// would confuse clients).
async fn relay(
    session: &mut Session,
    req: &Request<'_>,
    mut answer: Answer,
) -> Result<(), Refusal> {
    if let Some(cookie) = req
        .set_cookie
        .and_then(|c| http::HeaderValue::from_str(c).ok())
    {
        answer.headers.append(http::header::SET_COOKIE, cookie);
    }
    forward::relay(session, answer)
        .await
        .map_err(|e| Refusal::new(400, e.to_string()))
}

pub async fn handle(session: &mut Session, rt: &Runtime, req: Request<'_>) -> Result<(), Refusal> {
    match req.class {
        Class::Rules | Class::Alerts => prometheus(session, rt, &req).await,
        _ => alertmanager(session, rt, &req).await,
    }
}

async fn prometheus(session: &mut Session, rt: &Runtime, req: &Request<'_>) -> Result<(), Refusal> {
    if req.method != http::Method::GET {
        return Err(Refusal::new(405, "use GET").with_header("allow", "GET"));
    }
    let params = client_params(session, &[]);
    let u = url(
        &super::upstream::url(&rt.config.upstreams.rules),
        req.api_path,
        &params,
    );
    let answer = call(
        req,
        rt,
        "rules",
        http::Method::GET,
        &u,
        req.tenant_header,
        None,
    )
    .await?;
    if !(200..300).contains(&answer.status) {
        return relay(session, req, answer).await;
    }
    let mut value = json_of(&answer)?;
    match req.class {
        Class::Rules => filter::filter_rules(&mut value, req.matcher),
        _ => filter::filter_alerts(&mut value, req.matcher),
    }
    relay_json(session, req, answer.status, &value).await
}

async fn alertmanager(
    session: &mut Session,
    rt: &Runtime,
    req: &Request<'_>,
) -> Result<(), Refusal> {
    let Some(up) = rt.config.upstreams.alertmanager.as_ref() else {
        return Err(Refusal::new(
            404,
            "Alertmanager is not configured on this gateway (upstreams.alertmanager)",
        ));
    };
    let am = super::upstream::url(up);
    let m = req.matcher;
    match (req.class, req.method.clone()) {
        (Class::AmAlerts | Class::AmAlertGroups, http::Method::GET) => {
            // The filter parameter narrows at the source; the answer is filtered again here.
            let mut params = client_params(session, &[]);
            params.push(("filter".into(), tenant_filter(m)));
            let answer = call(
                req,
                rt,
                "alertmanager",
                http::Method::GET,
                &url(&am, req.api_path, &params),
                req.tenant_header,
                None,
            )
            .await?;
            if !(200..300).contains(&answer.status) {
                return relay(session, req, answer).await;
            }
            let mut value = json_of(&answer)?;
            if req.class == Class::AmAlerts {
                filter::filter_am_alerts(&mut value, m);
            } else {
                filter::filter_am_groups(&mut value, m);
            }
            relay_json(session, req, answer.status, &value).await
        }
        (Class::AmSilences, http::Method::GET) => {
            let params = client_params(session, &[]);
            let answer = call(
                req,
                rt,
                "alertmanager",
                http::Method::GET,
                &url(&am, req.api_path, &params),
                req.tenant_header,
                None,
            )
            .await?;
            if !(200..300).contains(&answer.status) {
                return relay(session, req, answer).await;
            }
            let mut value = json_of(&answer)?;
            filter::filter_silences(&mut value, m);
            relay_json(session, req, answer.status, &value).await
        }
        (Class::AmSilences, http::Method::POST) => {
            let [tenant] = m.values() else {
                return Err(Refusal::new(400, "a silence belongs to one tenant: name it with the path prefix or the tenant header"));
            };
            // A JSON API takes JSON: a `text/plain` or form body is what a page of another
            // origin can send without asking the browser first (CORS "simple" requests).
            super::contract::require_media_type(
                &session.req_header().headers,
                "application/json",
                "silences",
            )?;
            let body = read_body(session, MAX_SILENCE_BYTES).await?;
            let reject = |reason: &str| {
                metrics()
                    .enforcement_rejections
                    .with_label_values(&[req.tenant_header, reason])
                    .inc();
            };
            // The exact model: a key Alertmanager could read as another field is refused here,
            // and what goes upstream is the model serialised, never the client's bytes.
            let mut silence = PostableSilence::decode(&body).map_err(|e| {
                reject(e.reason());
                Refusal::new(400, e.to_string())
            })?;
            if let Some(id) = silence.id.as_deref() {
                // Updating a silence: it must already be this tenant's.
                if !plain_silence_id(id) {
                    reject("silence_id");
                    return Err(Refusal::new(
                        400,
                        format!(
                            "silence id {:?} is not an Alertmanager silence id (letters, digits, '-' and '_')",
                            id.chars().take(64).collect::<String>()
                        ),
                    ));
                }
                owned_silence(req, rt, &am, id, m, req.tenant_header).await?;
            }
            filter::enforce_silence(&mut silence, m.label(), tenant).map_err(|e| {
                reject(e.reason());
                Refusal::new(403, e.to_string())
            })?;
            let body = serde_json::to_vec(&silence)
                .map_err(|e| Refusal::new(400, format!("cannot serialise the silence: {e}")))?;
            let answer = call(
                req,
                rt,
                "alertmanager",
                http::Method::POST,
                &format!("{am}{}", req.api_path),
                req.tenant_header,
                Some(Bytes::from(body)),
            )
            .await?;
            relay(session, req, answer).await
        }
        (Class::AmSilence, http::Method::GET | http::Method::DELETE) => {
            let id = req.api_path.rsplit('/').next().unwrap_or_default();
            let silence = owned_silence(req, rt, &am, id, m, req.tenant_header).await?;
            if req.method == http::Method::GET {
                return relay_json(session, req, 200, &silence).await;
            }
            let answer = call(
                req,
                rt,
                "alertmanager",
                http::Method::DELETE,
                &format!("{am}{}", req.api_path),
                req.tenant_header,
                None,
            )
            .await?;
            relay(session, req, answer).await
        }
        _ => Err(Refusal::new(405, "method not allowed on this route")),
    }
}

/// True for an id Alertmanager could have given a silence (it makes UUIDs). The id of a posted
/// silence goes into the URL of the ownership lookup: `/`, `?`, `%` or a dot segment there
/// would look up a different silence than the one the body names.
fn plain_silence_id(id: &str) -> bool {
    id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The silence `id` when it is the tenant's; 404 otherwise (not revealing other tenants' ids).
async fn owned_silence(
    req: &Request<'_>,
    rt: &Runtime,
    am: &str,
    id: &str,
    m: &TenantMatcher,
    tenant_header: &str,
) -> Result<Value, Refusal> {
    let answer = call(
        req,
        rt,
        "alertmanager",
        http::Method::GET,
        &format!("{am}/api/v2/silence/{id}"),
        tenant_header,
        None,
    )
    .await?;
    let not_found = || Refusal::new(404, format!("silence {id} not found"));
    if answer.status == 404 {
        return Err(not_found());
    }
    if !(200..300).contains(&answer.status) {
        return Err(Refusal::new(
            502,
            format!(
                "Alertmanager answered {} looking up silence {id}",
                answer.status
            ),
        ));
    }
    let silence = json_of(&answer)?;
    if filter::silence_owned(&silence, m) {
        Ok(silence)
    } else {
        Err(not_found())
    }
}

/// Alertmanager filter matcher for the tenant(s): `tenant_id="a"` or `tenant_id=~"a|b"`.
fn tenant_filter(m: &TenantMatcher) -> String {
    let sel = m.selector();
    sel.trim_start_matches('{')
        .trim_end_matches('}')
        .to_string()
}
