//! The routing table: every path the gateway answers, each with one class. Default deny.
//!
//! Paths are matched exactly as sent (no decoding, no normalisation): `//`, `/./`, `%2F`,
//! trailing slashes or another case simply match nothing and get 404, so there is no second
//! interpretation of a path for an upstream to disagree with.

/// What the gateway does with a request on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Prometheus remote_write (v1/v2) → `upstreams.receive`.
    RemoteWrite,
    /// OTLP metrics → `upstreams.otlp`, body passed.
    Otlp,
    /// `query` parameter rewritten by PromQL enforcement.
    Promql,
    /// `match[]` parameters enforced (one added when absent).
    MatchSelectors,
    /// No tenant data in the answer: passed through for readers.
    Passthrough,
    /// `/api/v1/rules`: the answer filtered to the tenant's rules.
    Rules,
    /// `/api/v1/alerts`: the answer filtered to the tenant's alerts.
    Alerts,
    /// Alertmanager `/api/v2/alerts`: filter parameter set, answer filtered.
    AmAlerts,
    /// Alertmanager `/api/v2/alerts/groups`.
    AmAlertGroups,
    /// Alertmanager `/api/v2/silences`: listing filtered, new silences get the tenant matcher.
    AmSilences,
    /// Alertmanager `/api/v2/silence/{id}`: only the tenant's own silences.
    AmSilence,
    /// Never for tenants.
    Denied,
    Healthy,
    Ready,
    Metrics,
    Reload,
    /// `/oauth2/login`, `/oauth2/callback`, `/oauth2/logout`: browser login.
    Login,
    Callback,
    Logout,
    /// The web UI's pages and static assets (behind login, when `ui.enabled`).
    Ui,
}

/// A matched route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub class: Class,
    /// Low-cardinality name for metrics, e.g. `/api/v1/label/:name/values`.
    pub name: &'static str,
    /// Tenant named by a `/{tenant}/...` prefix.
    pub tenant: Option<&'a str>,
    /// The path without the tenant prefix; what is sent upstream (after the upstream's base path).
    pub api_path: &'a str,
}

const PROMQL: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/query_explain",
    "/api/v1/query_range_explain",
];
const MATCH: &[&str] = &[
    "/api/v1/series",
    "/api/v1/labels",
    "/federate",
    "/api/v1/status/tsdb",
];
const PASSTHROUGH: &[&str] = &[
    "/api/v1/status/buildinfo",
    "/api/v1/format_query",
    "/api/v1/parse_query",
];
const WRITE: &[&str] = &["/api/v1/receive", "/api/v1/write", "/api/v1/push"];
const OTLP: &[&str] = &["/api/v1/otlp/v1/metrics", "/api/v1/otlp"];
const DENIED: &[&str] = &[
    "/api/v1/metadata",
    "/api/v1/targets",
    "/api/v1/targets/metadata",
    "/api/v1/scrape_pools",
    "/api/v1/alertmanagers",
    "/api/v1/status/config",
    "/api/v1/status/flags",
    "/api/v1/status/runtimeinfo",
    "/api/v1/status/walreplay",
    "/api/v1/read",
    "/api/v1/stores",
    "/api/v1/notifications",
    "/api/v1/notifications/live",
];
const LABEL_VALUES: &str = "/api/v1/label/:name/values";

fn find(table: &[&'static str], path: &str) -> Option<&'static str> {
    table.iter().copied().find(|p| *p == path)
}

/// Classifies an API path (already without tenant prefix).
fn classify(path: &str) -> Option<(Class, &'static str)> {
    if let Some(n) = find(PROMQL, path) {
        return Some((Class::Promql, n));
    }
    if let Some(n) = find(MATCH, path) {
        return Some((Class::MatchSelectors, n));
    }
    if let Some(n) = find(WRITE, path) {
        return Some((Class::RemoteWrite, n));
    }
    if let Some(n) = find(OTLP, path) {
        return Some((Class::Otlp, n));
    }
    match path {
        "/api/v1/rules" => return Some((Class::Rules, "/api/v1/rules")),
        "/api/v1/alerts" => return Some((Class::Alerts, "/api/v1/alerts")),
        "/api/v2/alerts" => return Some((Class::AmAlerts, "/api/v2/alerts")),
        "/api/v2/alerts/groups" => return Some((Class::AmAlertGroups, "/api/v2/alerts/groups")),
        "/api/v2/silences" => return Some((Class::AmSilences, "/api/v2/silences")),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/api/v2/silence/") {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Some((Class::AmSilence, "/api/v2/silence/:id"));
        }
    }
    if let Some(n) = find(PASSTHROUGH, path) {
        return Some((Class::Passthrough, n));
    }
    if let Some(n) = find(DENIED, path) {
        return Some((Class::Denied, n));
    }
    if path.starts_with("/api/v1/admin/") {
        return Some((Class::Denied, "/api/v1/admin/*"));
    }
    if let Some(rest) = path.strip_prefix("/api/v1/label/") {
        if let Some(name) = rest.strip_suffix("/values") {
            if is_plain_segment(name) {
                return Some((Class::MatchSelectors, LABEL_VALUES));
            }
        }
    }
    None
}

/// A label name segment: non-empty, no `/`, no dot segments.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/')
}

/// Matches a request path (without the query string). `None`: 404.
pub fn route(path: &str) -> Option<Route<'_>> {
    match path {
        "/-/healthy" => return Some(local(Class::Healthy, "/-/healthy", path)),
        "/-/ready" => return Some(local(Class::Ready, "/-/ready", path)),
        "/metrics" => return Some(local(Class::Metrics, "/metrics", path)),
        "/-/reload" => return Some(local(Class::Reload, "/-/reload", path)),
        "/oauth2/login" => return Some(local(Class::Login, "/oauth2/login", path)),
        "/oauth2/callback" => return Some(local(Class::Callback, "/oauth2/callback", path)),
        "/oauth2/logout" => return Some(local(Class::Logout, "/oauth2/logout", path)),
        // Prometheus 2.42 (Debian) serves only its classic UI: /graph → /graph/ →
        // /classic/graph. Its other classic pages (alerts, rules, targets, status) are
        // rendered on the server with every tenant's data, so they are not here.
        "/" | "/graph" | "/graph/" | "/classic/graph" | "/alerts" | "/rules" | "/favicon.ico"
        | "/manifest.json" => return Some(local(Class::Ui, "ui", path)),
        _ => {}
    }
    if let Some(asset) = path
        .strip_prefix("/static/")
        .or_else(|| path.strip_prefix("/classic/static/"))
    {
        if asset.split('/').all(is_plain_segment) && !asset.contains('%') {
            return Some(local(Class::Ui, "ui", path));
        }
    }
    if let Some((class, name)) = classify(path) {
        return Some(Route {
            class,
            name,
            tenant: None,
            api_path: path,
        });
    }
    // `/{tenant}/api/v1/...` or `/{tenant}/federate`.
    let rest = path.strip_prefix('/')?;
    let slash = rest.find('/')?;
    let tenant = &rest[..slash];
    if !whizard_core::config::is_valid_tenant_id(tenant) {
        return None;
    }
    let api_path = &rest[slash..];
    let (class, name) = classify(api_path)?;
    Some(Route {
        class,
        name,
        tenant: Some(tenant),
        api_path,
    })
}

fn local<'a>(class: Class, name: &'static str, path: &'a str) -> Route<'a> {
    Route {
        class,
        name,
        tenant: None,
        api_path: path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_route_has_its_class() {
        for p in PROMQL {
            assert_eq!(route(p).unwrap().class, Class::Promql, "{p}");
        }
        for p in MATCH {
            assert_eq!(route(p).unwrap().class, Class::MatchSelectors, "{p}");
        }
        for p in WRITE {
            assert_eq!(route(p).unwrap().class, Class::RemoteWrite, "{p}");
        }
        for p in OTLP {
            assert_eq!(route(p).unwrap().class, Class::Otlp, "{p}");
        }
        for p in DENIED {
            assert_eq!(route(p).unwrap().class, Class::Denied, "{p}");
        }
        let r = route("/api/v1/label/job/values").unwrap();
        assert_eq!((r.class, r.name), (Class::MatchSelectors, LABEL_VALUES));
        assert_eq!(
            route("/api/v1/admin/tsdb/delete_series").unwrap().class,
            Class::Denied
        );
        assert_eq!(
            route("/api/v1/status/buildinfo").unwrap().class,
            Class::Passthrough
        );
        assert_eq!(route("/-/ready").unwrap().class, Class::Ready);
        assert_eq!(route("/api/v1/rules").unwrap().class, Class::Rules);
        assert_eq!(route("/api/v1/alerts").unwrap().class, Class::Alerts);
        assert_eq!(route("/api/v2/alerts").unwrap().class, Class::AmAlerts);
        assert_eq!(
            route("/api/v2/alerts/groups").unwrap().class,
            Class::AmAlertGroups
        );
        assert_eq!(route("/api/v2/silences").unwrap().class, Class::AmSilences);
        let r = route("/t/api/v2/silence/1f7c6a2e-0b4d-4e8a-9d0e-3c5b1a2f4e6d").unwrap();
        assert_eq!((r.class, r.tenant), (Class::AmSilence, Some("t")));
        assert!(route("/api/v2/silence/").is_none());
        assert!(route("/api/v2/silence/../status").is_none());
        assert!(route("/api/v2/status").is_none());
    }

    #[test]
    fn tenant_prefix() {
        let r = route("/team-a/api/v1/query").unwrap();
        assert_eq!(r.tenant, Some("team-a"));
        assert_eq!(r.api_path, "/api/v1/query");
        assert_eq!(r.class, Class::Promql);
        let r = route("/team-a/api/v1/receive").unwrap();
        assert_eq!((r.tenant, r.class), (Some("team-a"), Class::RemoteWrite));
        let r = route("/t.1/federate").unwrap();
        assert_eq!((r.tenant, r.class), (Some("t.1"), Class::MatchSelectors));
        // Local routes never take a prefix.
        assert!(route("/a/-/reload").is_none());
        assert!(route("/a/metrics").is_none());
    }

    #[test]
    fn login_and_ui() {
        assert_eq!(route("/oauth2/login").unwrap().class, Class::Login);
        assert_eq!(route("/oauth2/callback").unwrap().class, Class::Callback);
        assert_eq!(route("/oauth2/logout").unwrap().class, Class::Logout);
        for p in [
            "/",
            "/graph",
            "/static/js/main.1234.js",
            "/static/media/x.svg",
            "/favicon.ico",
        ] {
            assert_eq!(route(p).unwrap().class, Class::Ui, "{p}");
        }
        for p in [
            "/static/",
            "/static/../api/v1/query",
            "/static//x",
            "/static/%2e%2e/x",
            "/t/graph",
            "/targets",
            "/config",
        ] {
            assert!(route(p).is_none(), "{p}");
        }
    }

    #[test]
    fn anything_else_is_not_found() {
        for p in [
            "",
            "/api/v1/query/",
            "//api/v1/query",
            "/api//v1/query",
            "/./api/v1/query",
            "/api/v1/./query",
            "/api/v1/../v1/query",
            "/API/V1/QUERY",
            "/Api/v1/query",
            "/api/v1/query%2F",
            "/api%2Fv1%2Fquery",
            "/api/v1/label//values",
            "/api/v1/label/a/b/values",
            "/api/v1/label/../values",
            "/api/v1/unknown",
            "/api/v2/query",
            "/../api/v1/query",
            "/%2e%2e/api/v1/query",
            "/a/b/api/v1/query",
            "/a%2Fb/api/v1/query",
            "/-/quit",
            "/api/v1/write/",
        ] {
            assert!(route(p).is_none(), "{p:?} must be 404");
        }
    }
}
