//! The gateway's own metrics (DESIGN.md "Metrics"), registered once in a private registry.

mod tallies;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::OnceLock;

pub struct Metrics {
    registry: Registry,
    /// Counted through [`Metrics::request_done`] only, like `request_duration`.
    requests: IntCounterVec,
    request_duration: HistogramVec,
    pub auth_failures: IntCounterVec,
    pub remote_write_samples: IntCounterVec,
    pub remote_write_series: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub enforcement_rejections: IntCounterVec,
    pub limit_rejections: IntCounterVec,
    pub remote_write_copies: IntCounterVec,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp: IntGauge,
    pub build_info: IntGaugeVec,
    pub access_log_dropped: prometheus::IntCounter,
    pub auth_throttled: IntCounterVec,
    pub auth_verifications: IntCounterVec,
    pub cluster_peers: IntGaugeVec,
    /// Counted through [`Metrics::short_way_request`] only.
    short_way_requests: prometheus::IntCounter,
}

fn build() -> Metrics {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "whizard_gateway_requests_total",
            "Requests handled, by tenant, route and status code.",
        ),
        &["tenant", "route", "code"],
    )
    .expect("static metric definition");
    let request_duration = HistogramVec::new(
        HistogramOpts::new(
            "whizard_gateway_request_duration_seconds",
            "Time from request start to the end of the response, by tenant and route.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ]),
        &["tenant", "route"],
    )
    .expect("static metric definition");
    let auth_failures = IntCounterVec::new(
        Opts::new(
            "whizard_auth_failures_total",
            "Refused authentication attempts, by method and reason.",
        ),
        &["method", "reason"],
    )
    .expect("static metric definition");
    let remote_write_samples = IntCounterVec::new(
        Opts::new(
            "whizard_remote_write_samples_total",
            "Samples (and histogram samples) accepted upstream, by tenant.",
        ),
        &["tenant"],
    )
    .expect("static metric definition");
    let remote_write_series = IntCounterVec::new(
        Opts::new(
            "whizard_remote_write_series_total",
            "Series in remote-write requests accepted upstream, by tenant.",
        ),
        &["tenant"],
    )
    .expect("static metric definition");
    let upstream_errors = IntCounterVec::new(
        Opts::new(
            "whizard_upstream_errors_total",
            "Failed upstream exchanges, by upstream and kind.",
        ),
        &["upstream", "kind"],
    )
    .expect("static metric definition");
    let enforcement_rejections = IntCounterVec::new(
        Opts::new(
            "whizard_enforcement_rejections_total",
            "Read requests refused by label enforcement, by tenant and reason.",
        ),
        &["tenant", "reason"],
    )
    .expect("static metric definition");
    let limit_rejections = IntCounterVec::new(
        Opts::new(
            "whizard_limit_rejections_total",
            "Requests refused with 429 because a tenant is over a limit, by tenant and limit.",
        ),
        &["tenant", "limit"],
    )
    .expect("static metric definition");
    let remote_write_copies = IntCounterVec::new(
        Opts::new("whizard_remote_write_copies_total", "Copies of accepted writes sent to upstreams.remote_writes targets, by target and result."),
        &["target", "result"],
    )
    .expect("static metric definition");
    let config_last_reload_successful = IntGauge::new(
        "whizard_config_last_reload_successful",
        "1 when the last config (re)load succeeded, 0 when it was refused.",
    )
    .expect("static metric definition");
    let config_last_reload_success_timestamp = IntGauge::new(
        "whizard_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load.",
    )
    .expect("static metric definition");
    let build_info = IntGaugeVec::new(
        Opts::new("whizard_build_info", "Build information; always 1."),
        &["version"],
    )
    .expect("static metric definition");
    for c in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(request_duration.clone()),
        Box::new(auth_failures.clone()),
        Box::new(remote_write_samples.clone()),
        Box::new(remote_write_series.clone()),
        Box::new(upstream_errors.clone()),
        Box::new(enforcement_rejections.clone()),
        Box::new(limit_rejections.clone()),
        Box::new(remote_write_copies.clone()),
        Box::new(config_last_reload_successful.clone()),
        Box::new(config_last_reload_success_timestamp.clone()),
        Box::new(build_info.clone()),
    ] {
        registry.register(c).expect("metric names are unique");
    }
    let access_log_dropped = prometheus::IntCounter::new(
        "whizard_access_log_dropped_lines_total",
        "Access-log lines dropped because the writer fell behind.",
    )
    .expect("static metric definition");
    let auth_throttled = IntCounterVec::new(
        Opts::new(
            "whizard_auth_throttled_total",
            "Logins slowed down or refused by the brute-force throttle, by scope (address: the address failed for many names; user: the name failed from many addresses; address_user: this address failed for this name; slots: the address's share of the verification slots and its queue were full) and action (delayed, refused).",
        ),
        &["scope", "action"],
    )
    .expect("static metric definition");
    let auth_verifications = IntCounterVec::new(
        Opts::new(
            "whizard_auth_verifications_total",
            "Password hash verifications (Basic Auth credentials not answered from the cache), by result (success, failure).",
        ),
        &["result"],
    )
    .expect("static metric definition");
    let cluster_peers = IntGaugeVec::new(
        Opts::new(
            "whizard_cluster_peers",
            "Replicas of the fleet (cluster) by state at the last probe round: live (answered /-/ready, or this replica) or down. Every per-tenant limit is shared by the live ones. Absent without cluster.",
        ),
        &["state"],
    )
    .expect("static metric definition");
    registry
        .register(Box::new(cluster_peers.clone()))
        .expect("metric names are unique");
    registry
        .register(Box::new(access_log_dropped.clone()))
        .expect("metric names are unique");
    registry
        .register(Box::new(auth_throttled.clone()))
        .expect("metric names are unique");
    registry
        .register(Box::new(auth_verifications.clone()))
        .expect("metric names are unique");
    let short_way_requests = prometheus::IntCounter::new(
        "whizard_gateway_short_way_requests_total",
        "Requests served on the short way for plain HTTP/1.1 GETs (server.short_way) instead of pingora's general engine.",
    )
    .expect("static metric definition");
    registry
        .register(Box::new(short_way_requests.clone()))
        .expect("metric names are unique");
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    Metrics {
        registry,
        requests,
        request_duration,
        auth_failures,
        remote_write_samples,
        remote_write_series,
        upstream_errors,
        enforcement_rejections,
        limit_rejections,
        remote_write_copies,
        config_last_reload_successful,
        config_last_reload_success_timestamp,
        build_info,
        access_log_dropped,
        auth_throttled,
        auth_verifications,
        cluster_peers,
        short_way_requests,
    }
}

impl Metrics {
    /// Counts a finished request in `requests` (by tenant, route and `code`) and
    /// `request_duration`: tallied by the calling thread, shared at the next scrape.
    pub fn request_done(
        &self,
        tenant: &str,
        route: &'static str,
        code: http::StatusCode,
        seconds: f64,
    ) {
        tallies::request(
            &self.requests,
            &self.request_duration,
            (tenant, route, code),
            seconds,
        );
    }

    /// Counts a request served on the short way (`short_way_requests`), like
    /// [`Metrics::request_done`].
    pub fn short_way_request(&self) {
        tallies::short_way(&self.short_way_requests);
    }
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// The exposition text of every metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    tallies::add_to_shared();
    let families = metrics().registry.gather();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&families, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{metrics, render};
    use http::StatusCode;

    /// The value of the sample line of `text` that starts with `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Requests counted on any thread are all in the next scrape, once.
    #[test]
    fn requests_tallied_per_thread_show_in_the_next_scrape_exactly() {
        let m = metrics();
        let route = "/api/v1/query";
        let before = sample(
            &String::from_utf8(render()).unwrap(),
            "whizard_gateway_short_way_requests_total",
        )
        .unwrap_or(0.0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..5 {
                        m.request_done("tally-test", route, StatusCode::OK, 0.002);
                        m.short_way_request();
                    }
                });
            }
        });
        m.request_done("tally-test", route, StatusCode::NOT_FOUND, 20.0);
        for _ in 0..2 {
            let text = String::from_utf8(render()).unwrap();
            let labels = r#"route="/api/v1/query",tenant="tally-test""#;
            let count = |code: &str| {
                sample(
                    &text,
                    &format!(r#"whizard_gateway_requests_total{{code="{code}",{labels}}}"#),
                )
            };
            assert_eq!(count("200"), Some(15.0), "{text}");
            assert_eq!(count("404"), Some(1.0), "{text}");
            let duration = |part: &str| {
                sample(
                    &text,
                    &format!("whizard_gateway_request_duration_seconds_{part}"),
                )
            };
            assert_eq!(duration(&format!("count{{{labels}}}")), Some(16.0));
            let sum = duration(&format!("sum{{{labels}}}")).unwrap();
            assert!((sum - 20.03).abs() < 1e-9, "{sum}");
            assert_eq!(
                duration(&format!(r#"bucket{{{labels},le="0.0025"}}"#)),
                Some(15.0)
            );
            assert_eq!(
                sample(&text, "whizard_gateway_short_way_requests_total"),
                Some(before + 15.0)
            );
        }
    }
}
