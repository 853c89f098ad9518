//! Golden and property tests for the enforcement module.

use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr};
use proptest::prelude::*;

use super::*;

fn t1() -> TenantMatcher {
    TenantMatcher::new("tenant_id", ["t1"]).expect("valid tenant")
}

fn t12() -> TenantMatcher {
    TenantMatcher::new("tenant_id", ["t2", "t1", "t2"]).expect("valid tenant")
}

/// Values with every regex metacharacter, quotes, backslashes and non-ASCII.
fn special() -> TenantMatcher {
    TenantMatcher::new(
        "tenant_id",
        ["a.b", "c|d", "e\"f", "g\\h", "x+y*z?(1)[2]{3}^$", "ü-ñ"],
    )
    .expect("valid tenant")
}

fn check_golden(tenant: &TenantMatcher, cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (input, expected) in cases {
        match enforce_query(input, tenant) {
            Ok(out) if out == *expected => {}
            other => failures.push(format!("{input}\n   want: {expected}\n    got: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn check_refused(tenant: &TenantMatcher, cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (input, reason) in cases {
        match enforce_query(input, tenant) {
            Err(e) if e.reason() == *reason => {}
            other => failures.push(format!("{input}\n   want: {reason}\n    got: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn golden_plain_selectors() {
    check_golden(
        &t1(),
        &[
            ("up", r#"up{tenant_id="t1"}"#),
            ("up{}", r#"up{tenant_id="t1"}"#),
            (r#"up{job="api"}"#, r#"up{job="api",tenant_id="t1"}"#),
            (r#"{job="api"}"#, r#"{job="api",tenant_id="t1"}"#),
            (r#"{__name__="up"}"#, r#"{__name__="up",tenant_id="t1"}"#),
            (
                r#"{__name__=~"up|down",job!=""}"#,
                r#"{__name__=~"up|down",job!="",tenant_id="t1"}"#,
            ),
            (
                r#"up{zone!~"z1",job="a",instance!="b",env=~"p.*",}"#,
                r#"up{env=~"p.*",instance!="b",job="a",tenant_id="t1",zone!~"z1"}"#,
            ),
            ("job:rate5m:sum", r#"job:rate5m:sum{tenant_id="t1"}"#),
            ("up{job='a'}", r#"up{job="a",tenant_id="t1"}"#),
            ("up{job=`a.b`}", r#"up{job="a.b",tenant_id="t1"}"#),
            (
                r#"up{path="a\"b\\c\n"}"#,
                r#"up{path="a\"b\\c\n",tenant_id="t1"}"#,
            ),
            (
                r#"up{job="x'}"} or vector(1)"#,
                r#"up{job="x'}",tenant_id="t1"} or vector(1)"#,
            ),
            ("Up", r#"Up{tenant_id="t1"}"#),
            // Metric names that are PromQL keywords elsewhere.
            ("sum{job=\"a\"}", r#"sum{job="a",tenant_id="t1"}"#),
            ("offset", r#"offset{tenant_id="t1"}"#),
            // Comments are dropped by the parser.
            ("up # comment (((\n", r#"up{tenant_id="t1"}"#),
        ],
    );
}

#[test]
fn golden_utf8_names() {
    check_golden(
        &t1(),
        &[
            (
                r#"{"my.metric"}"#,
                r#"{__name__="my.metric",tenant_id="t1"}"#,
            ),
            (
                r#"{"my.metric", "foo.bar"="x"}"#,
                r#"{"foo.bar"="x",__name__="my.metric",tenant_id="t1"}"#,
            ),
            (
                r#"rate({"http.requests", job="a"}[5m])"#,
                r#"rate({__name__="http.requests",job="a",tenant_id="t1"}[5m])"#,
            ),
            (
                r#"sum by ("foo.bar", job) ({"my.metric"})"#,
                r#"sum by ("foo.bar", job) ({__name__="my.metric",tenant_id="t1"})"#,
            ),
            (r#"{"métrique"}"#, r#"{__name__="métrique",tenant_id="t1"}"#),
            (
                r#"{"my.metric", tenant_id="t1"}"#,
                r#"{__name__="my.metric",tenant_id="t1"}"#,
            ),
        ],
    );
}

#[test]
fn golden_aggregations() {
    check_golden(
        &t1(),
        &[
            ("sum(up)", r#"sum(up{tenant_id="t1"})"#),
            ("sum by (job) (up)", r#"sum by (job) (up{tenant_id="t1"})"#),
            ("sum(up) by (job, instance)", r#"sum by (job, instance) (up{tenant_id="t1"})"#),
            ("sum without (instance) (up)", r#"sum without (instance) (up{tenant_id="t1"})"#),
            ("sum(up) without ()", r#"sum without () (up{tenant_id="t1"})"#),
            // `by ()` is the same as no grouping; the printer drops it.
            ("count by () (up)", r#"count(up{tenant_id="t1"})"#),
            ("avg(up)", r#"avg(up{tenant_id="t1"})"#),
            ("min(up) + max(up)", r#"min(up{tenant_id="t1"}) + max(up{tenant_id="t1"})"#),
            ("group by (job) (up)", r#"group by (job) (up{tenant_id="t1"})"#),
            ("stddev(up)", r#"stddev(up{tenant_id="t1"})"#),
            ("stdvar by (job) (up)", r#"stdvar by (job) (up{tenant_id="t1"})"#),
            ("topk(5, up)", r#"topk(5, up{tenant_id="t1"})"#),
            (
                "bottomk by (job) (3, rate(x[5m]))",
                r#"bottomk by (job) (3, rate(x{tenant_id="t1"}[5m]))"#,
            ),
            ("quantile(0.9, up)", r#"quantile(0.9, up{tenant_id="t1"})"#),
            (
                "quantile by (job) (scalar(q), up)",
                r#"quantile by (job) (scalar(q{tenant_id="t1"}), up{tenant_id="t1"})"#,
            ),
            (
                r#"count_values("version", build_info)"#,
                r#"count_values("version", build_info{tenant_id="t1"})"#,
            ),
            (
                r#"count_values without (instance) ("v", up)"#,
                r#"count_values without (instance) ("v", up{tenant_id="t1"})"#,
            ),
            ("limitk(2, up)", r#"limitk(2, up{tenant_id="t1"})"#),
            ("limit_ratio(0.5, up)", r#"limit_ratio(0.5, up{tenant_id="t1"})"#),
            (
                "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (job) (rate(http_requests_total[5m]))",
                r#"sum by (job) (rate(http_requests_total{code=~"5..",tenant_id="t1"}[5m])) / sum by (job) (rate(http_requests_total{tenant_id="t1"}[5m]))"#,
            ),
            (
                "max(sum by (job) (up))",
                r#"max(sum by (job) (up{tenant_id="t1"}))"#,
            ),
        ],
    );
}

#[test]
fn golden_binary_operators() {
    check_golden(
        &t1(),
        &[
            ("a + b", r#"a{tenant_id="t1"} + b{tenant_id="t1"}"#),
            (
                "a - b * c / d % e ^ f",
                r#"a{tenant_id="t1"} - b{tenant_id="t1"} * c{tenant_id="t1"} / d{tenant_id="t1"} % e{tenant_id="t1"} ^ f{tenant_id="t1"}"#,
            ),
            (
                "a ^ b ^ c",
                r#"a{tenant_id="t1"} ^ b{tenant_id="t1"} ^ c{tenant_id="t1"}"#,
            ),
            (
                "(a + b) * c",
                r#"(a{tenant_id="t1"} + b{tenant_id="t1"}) * c{tenant_id="t1"}"#,
            ),
            ("a atan2 b", r#"a{tenant_id="t1"} atan2 b{tenant_id="t1"}"#),
            ("a == b", r#"a{tenant_id="t1"} == b{tenant_id="t1"}"#),
            (
                "a != bool b",
                r#"a{tenant_id="t1"} != bool b{tenant_id="t1"}"#,
            ),
            ("a > bool 5", r#"a{tenant_id="t1"} > bool 5"#),
            ("a >= 5", r#"a{tenant_id="t1"} >= 5"#),
            ("5 < a", r#"5 < a{tenant_id="t1"}"#),
            ("a <= b", r#"a{tenant_id="t1"} <= b{tenant_id="t1"}"#),
            ("1 > bool 2", "1 > bool 2"),
            (
                "a / on(job) b",
                r#"a{tenant_id="t1"} / on (job) b{tenant_id="t1"}"#,
            ),
            (
                "a / on() b",
                r#"a{tenant_id="t1"} / on () b{tenant_id="t1"}"#,
            ),
            (
                "a / ignoring(instance, code) b",
                r#"a{tenant_id="t1"} / ignoring (instance, code) b{tenant_id="t1"}"#,
            ),
            // `ignoring ()` is the same as no matching clause; the printer drops it.
            (
                "a + ignoring() b",
                r#"a{tenant_id="t1"} + b{tenant_id="t1"}"#,
            ),
            (
                "a * on(job) group_left(team) b",
                r#"a{tenant_id="t1"} * on (job) group_left (team) b{tenant_id="t1"}"#,
            ),
            (
                "a * ignoring(x) group_right b",
                r#"a{tenant_id="t1"} * ignoring (x) group_right () b{tenant_id="t1"}"#,
            ),
            (
                "a > bool on(job) group_left(team) b",
                r#"a{tenant_id="t1"} > bool on (job) group_left (team) b{tenant_id="t1"}"#,
            ),
            ("a and b", r#"a{tenant_id="t1"} and b{tenant_id="t1"}"#),
            ("a or b", r#"a{tenant_id="t1"} or b{tenant_id="t1"}"#),
            (
                "a unless b",
                r#"a{tenant_id="t1"} unless b{tenant_id="t1"}"#,
            ),
            (
                "a and on(job) b",
                r#"a{tenant_id="t1"} and on (job) b{tenant_id="t1"}"#,
            ),
            (
                "a or ignoring(x) b",
                r#"a{tenant_id="t1"} or ignoring (x) b{tenant_id="t1"}"#,
            ),
            (
                "a and ignoring() b",
                r#"a{tenant_id="t1"} and b{tenant_id="t1"}"#,
            ),
            (
                "a unless on(job) b or c",
                r#"a{tenant_id="t1"} unless on (job) b{tenant_id="t1"} or c{tenant_id="t1"}"#,
            ),
            ("-a", r#"-a{tenant_id="t1"}"#),
            ("-(a + b)", r#"-(a{tenant_id="t1"} + b{tenant_id="t1"})"#),
            ("+a", r#"a{tenant_id="t1"}"#),
            ("a - -b", r#"a{tenant_id="t1"} - -b{tenant_id="t1"}"#),
            ("a * 100", r#"a{tenant_id="t1"} * 100"#),
            ("2 * a + 1", r#"2 * a{tenant_id="t1"} + 1"#),
            (
                "a + fill(0) b",
                r#"a{tenant_id="t1"} + fill (0) b{tenant_id="t1"}"#,
            ),
            (
                "a + on(job) fill_left(1) fill_right(-2) b",
                r#"a{tenant_id="t1"} + on (job) fill_left (1) fill_right (-2) b{tenant_id="t1"}"#,
            ),
        ],
    );
}

#[test]
fn golden_vector_literals_and_scalars() {
    check_golden(
        &t1(),
        &[
            ("vector(1)", "vector(1)"),
            ("vector(1) + up", r#"vector(1) + up{tenant_id="t1"}"#),
            ("up or vector(0)", r#"up{tenant_id="t1"} or vector(0)"#),
            (
                "sum(up) or vector(0)",
                r#"sum(up{tenant_id="t1"}) or vector(0)"#,
            ),
            ("scalar(up) * 2", r#"scalar(up{tenant_id="t1"}) * 2"#),
            ("time() - up", r#"time() - up{tenant_id="t1"}"#),
            (
                "time() - process_start_time_seconds",
                r#"time() - process_start_time_seconds{tenant_id="t1"}"#,
            ),
            ("vector(time())", "vector(time())"),
            ("year()", "year()"),
            ("year(up)", r#"year(up{tenant_id="t1"})"#),
            ("pi()", "pi()"),
        ],
    );
}

#[test]
fn golden_literals_alone() {
    check_golden(
        &t1(),
        &[
            ("1+1", "1 + 1"),
            ("1", "1"),
            ("-1", "-1"),
            ("- -1", "1"),
            ("1.5e3", "1500"),
            ("0x1f", "31"),
            ("NaN", "NaN"),
            ("Inf", "Inf"),
            ("-Inf", "-Inf"),
            ("(1 + 2) * 3", "(1 + 2) * 3"),
            ("2 ^ 3 ^ 2", "2 ^ 3 ^ 2"),
            (r#""foo""#, r#""foo""#),
            ("'foo'", r#""foo""#),
            ("`fo'o`", r#""fo'o""#),
            (r#""a\"b""#, r#""a\"b""#),
            ("time()", "time()"),
        ],
    );
}

#[test]
fn golden_subqueries() {
    check_golden(
        &t1(),
        &[
            ("up[5m:]", r#"up{tenant_id="t1"}[5m:]"#),
            ("up[5m:1m]", r#"up{tenant_id="t1"}[5m:1m]"#),
            (
                "max_over_time(rate(x[1m])[30m:1m])",
                r#"max_over_time(rate(x{tenant_id="t1"}[1m])[30m:1m])"#,
            ),
            (
                "max_over_time(deriv(rate(x[1m])[10m:])[1h:5m] offset 2h)",
                r#"max_over_time(deriv(rate(x{tenant_id="t1"}[1m])[10m:])[1h:5m] offset 2h)"#,
            ),
            (
                "min_over_time((a + b)[10m:30s] @ end())",
                r#"min_over_time((a{tenant_id="t1"} + b{tenant_id="t1"})[10m:30s] @ end())"#,
            ),
            (
                "avg_over_time(sum by (job) (up)[1h:] offset -5m)",
                r#"avg_over_time(sum by (job) (up{tenant_id="t1"})[1h:] offset -5m)"#,
            ),
            (
                "sum_over_time(up @ 100 [10m:1m])",
                r#"sum_over_time(up{tenant_id="t1"} @ 100.000[10m:1m])"#,
            ),
        ],
    );
}

#[test]
fn golden_offset_and_at() {
    check_golden(
        &t1(),
        &[
            ("up offset 5m", r#"up{tenant_id="t1"} offset 5m"#),
            ("up offset -5m", r#"up{tenant_id="t1"} offset -5m"#),
            ("up offset 90s", r#"up{tenant_id="t1"} offset 1m30s"#),
            ("up offset 1y2w", r#"up{tenant_id="t1"} offset 379d"#),
            ("up @ 1609746000", r#"up{tenant_id="t1"} @ 1609746000.000"#),
            ("up @ 1.5", r#"up{tenant_id="t1"} @ 1.500"#),
            ("up @ start()", r#"up{tenant_id="t1"} @ start()"#),
            ("up @ end()", r#"up{tenant_id="t1"} @ end()"#),
            (
                "up @ end() offset 1h",
                r#"up{tenant_id="t1"} @ end() offset 1h"#,
            ),
            (
                "up offset 1h @ start()",
                r#"up{tenant_id="t1"} @ start() offset 1h"#,
            ),
            ("up[5m] offset 1h", r#"up{tenant_id="t1"}[5m] offset 1h"#),
            (
                "rate(http_requests_total[5m] @ end() offset 10m)",
                r#"rate(http_requests_total{tenant_id="t1"}[5m] @ end() offset 10m)"#,
            ),
            (
                "rate(up[5m] @ 1609746000)",
                r#"rate(up{tenant_id="t1"}[5m] @ 1609746000.000)"#,
            ),
        ],
    );
}

#[test]
fn golden_functions() {
    check_golden(
        &t1(),
        &[
            ("rate(up[5m])", r#"rate(up{tenant_id="t1"}[5m])"#),
            ("irate(up[1m])", r#"irate(up{tenant_id="t1"}[1m])"#),
            ("increase(up[1h])", r#"increase(up{tenant_id="t1"}[1h])"#),
            ("delta(up[90s])", r#"delta(up{tenant_id="t1"}[1m30s])"#),
            (
                "predict_linear(up[1h], 3600)",
                r#"predict_linear(up{tenant_id="t1"}[1h], 3600)"#,
            ),
            (
                "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
                r#"histogram_quantile(0.99, sum by (le) (rate(x_bucket{tenant_id="t1"}[5m])))"#,
            ),
            (
                r#"label_replace(up, "dst", "$1", "src", "(.*)")"#,
                r#"label_replace(up{tenant_id="t1"}, "dst", "$1", "src", "(.*)")"#,
            ),
            (
                r#"label_join(up{job="a"}, "new", ",", "job", "instance")"#,
                r#"label_join(up{job="a",tenant_id="t1"}, "new", ",", "job", "instance")"#,
            ),
            // Relabelling the result does not widen what was selected.
            (
                r#"label_replace(up, "tenant_id", "other", "", "")"#,
                r#"label_replace(up{tenant_id="t1"}, "tenant_id", "other", "", "")"#,
            ),
            (
                "absent(nonexistent)",
                r#"absent(nonexistent{tenant_id="t1"})"#,
            ),
            (
                r#"absent(up{job="a"})"#,
                r#"absent(up{job="a",tenant_id="t1"})"#,
            ),
            (
                "absent_over_time(up[1h])",
                r#"absent_over_time(up{tenant_id="t1"}[1h])"#,
            ),
            ("clamp_max(up, 1)", r#"clamp_max(up{tenant_id="t1"}, 1)"#),
            ("clamp(up, 0, 1)", r#"clamp(up{tenant_id="t1"}, 0, 1)"#),
            ("round(up, 0.5)", r#"round(up{tenant_id="t1"}, 0.5)"#),
            (
                "sort_desc(sum by (job) (up))",
                r#"sort_desc(sum by (job) (up{tenant_id="t1"}))"#,
            ),
            ("timestamp(up)", r#"timestamp(up{tenant_id="t1"})"#),
            ("changes(up[1h])", r#"changes(up{tenant_id="t1"}[1h])"#),
            (
                "quantile_over_time(0.5, up[1h])",
                r#"quantile_over_time(0.5, up{tenant_id="t1"}[1h])"#,
            ),
            (
                "histogram_fraction(0, 0.2, rate(x[5m]))",
                r#"histogram_fraction(0, 0.2, rate(x{tenant_id="t1"}[5m]))"#,
            ),
            ("abs(abs(abs(up)))", r#"abs(abs(abs(up{tenant_id="t1"})))"#),
        ],
    );
}

#[test]
fn golden_same_label_single_tenant() {
    check_golden(
        &t1(),
        &[
            // Identical to the enforced matcher: kept once.
            (r#"up{tenant_id="t1"}"#, r#"up{tenant_id="t1"}"#),
            // Matches the allowed value: kept, enforced matcher added.
            (
                r#"up{tenant_id!="t2"}"#,
                r#"up{tenant_id!="t2",tenant_id="t1"}"#,
            ),
            (
                r#"up{tenant_id=~"t.*"}"#,
                r#"up{tenant_id="t1",tenant_id=~"t.*"}"#,
            ),
            (
                r#"up{tenant_id=~".+"}"#,
                r#"up{tenant_id="t1",tenant_id=~".+"}"#,
            ),
            (
                r#"up{tenant_id=~"t1|evil"}"#,
                r#"up{tenant_id="t1",tenant_id=~"t1|evil"}"#,
            ),
            (
                r#"up{tenant_id=~"(?i)T1"}"#,
                r#"up{tenant_id="t1",tenant_id=~"(?i)T1"}"#,
            ),
            (
                r#"up{tenant_id!~"t2|t3"}"#,
                r#"up{tenant_id!~"t2|t3",tenant_id="t1"}"#,
            ),
            (
                r#"up{tenant_id!~""}"#,
                r#"up{tenant_id!~"",tenant_id="t1"}"#,
            ),
            (
                r#"up{tenant_id!="t2",tenant_id=~"t.+"}"#,
                r#"up{tenant_id!="t2",tenant_id="t1",tenant_id=~"t.+"}"#,
            ),
            (
                r#"rate(up{tenant_id=~"t1"}[5m])"#,
                r#"rate(up{tenant_id="t1",tenant_id=~"t1"}[5m])"#,
            ),
        ],
    );
    check_refused(
        &t1(),
        &[
            (r#"up{tenant_id="t2"}"#, "disjoint"),
            (r#"up{tenant_id=""}"#, "disjoint"),
            (r#"up{tenant_id="T1"}"#, "disjoint"),
            (r#"up{tenant_id!="t1"}"#, "disjoint"),
            (r#"up{tenant_id=~"t2|t3"}"#, "disjoint"),
            // Anchored: `t` does not match `t1`.
            (r#"up{tenant_id=~"t"}"#, "disjoint"),
            (r#"up{tenant_id=~"x.*"}"#, "disjoint"),
            (r#"up{tenant_id!~"t1"}"#, "disjoint"),
            (r#"up{tenant_id!~"t.*"}"#, "disjoint"),
            (r#"up{tenant_id!~".*"}"#, "disjoint"),
            (r#"up{tenant_id="t1",tenant_id="t2"}"#, "disjoint"),
            // Quoted label names are the same label.
            (r#"up{"tenant_id"="t2"}"#, "disjoint"),
            // Anywhere in the tree.
            (r#"sum(rate(x{tenant_id="evil"}[5m]))"#, "disjoint"),
            (r#"a + on(job) group_left b{tenant_id="evil"}"#, "disjoint"),
            (r#"max_over_time(x{tenant_id="evil"}[5m:])"#, "disjoint"),
            (
                r#"label_replace(x{tenant_id="evil"}, "a", "b", "c", "d")"#,
                "disjoint",
            ),
            (r#"topk(scalar(x{tenant_id="evil"}), up)"#, "disjoint"),
        ],
    );
}

/// Runs `f` and returns how many verifications of a query with regex matchers it made
/// without the stand-ins, on this thread.
fn slow_verifications(f: impl FnOnce()) -> usize {
    use super::promql::SLOW_VERIFICATIONS;
    let before = SLOW_VERIFICATIONS.with(|n| n.get());
    f();
    SLOW_VERIFICATIONS.with(|n| n.get()) - before
}

fn stand_in(i: usize, op: &str, value: &str) -> String {
    format!("{}{i}{op}\"{value}\"", super::promql::STAND_IN_NAME)
}

#[test]
fn regex_matchers_are_verified_through_stand_ins() {
    let queries = [
        "up",
        r#"sum by (job) (rate(http_requests_total{code=~"5..",job!~"x|y"}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))"#,
        r#"up{tenant_id!="zzz"} or absent(up{tenant_id!~"t3"})"#,
        r#"max_over_time(deriv(x{a=~"\\d+\"q"}[5m:1m] offset 1h)[1h:5m] @ 100)"#,
        r#"{__name__=~"kube_pod_.+", namespace="default"}"#,
        r#"label_replace(up{job=~"a.*"}, "dst", "$1", "src", "(.*)")"#,
    ];
    for tenant in [t1(), t12(), special()] {
        for q in queries {
            let mut out = Err(EnforceError::TooDeep { limit: 0 });
            let slow = slow_verifications(|| out = enforce_query(q, &tenant));
            let out = out.unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(slow, 0, "{q} for {:?} took the slow path", tenant.values());
            assert!(!out.contains(super::promql::STAND_IN_NAME), "{out}");
            // The output is the query a plain re-parse accepts, every selector enforced.
            let (seen, all, or_groups) = survey(&parser::parse(&out).unwrap(), &tenant);
            assert!(seen > 0 && all && !or_groups, "{out}");
        }
        let mut out = Err(EnforceError::TooDeep { limit: 0 });
        let slow = slow_verifications(|| {
            out = enforce_match_selector(r#"{__name__=~"kube_.+",job="a"}"#, &tenant);
        });
        assert_eq!(slow, 0);
        assert!(out.unwrap().contains(&tenant.matcher().to_string()));
    }
}

#[test]
fn stand_in_lookalikes_are_enforced_and_fall_back_when_unsafe() {
    let tenant = t12();
    let real = tenant.matcher().to_string();
    let fake = stand_in(0, "=", "t1|t2");
    // The printer escapes the quotes of string literals, so matcher texts inside strings do
    // not look like matchers and keep the fast path (0). A label whose name ends like the
    // tenant label's is a regex matcher of its own, swapped first (longest text first). Where
    // the output holds the stand-in prefix, or a regex matcher's name is quoted, the query is
    // verified as printed (1). Either way it is enforced.
    let cases = [
        (
            format!("label_replace(up, \"a\", `{real}`, \"b\", \"c\")"),
            0,
        ),
        (format!("up{{x{real}}}"), 0),
        (format!("count_values(`{fake}`, up)"), 1),
        (format!("up{{x{fake}}}"), 1),
        (format!("up{{{fake}}}"), 1),
        (r#"up{"a b"=~"c.*"}"#.to_string(), 1),
    ];
    for (q, want_slow) in &cases {
        let mut out = Err(EnforceError::TooDeep { limit: 0 });
        let slow = slow_verifications(|| out = enforce_query(q, &tenant));
        let out = out.unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(slow, *want_slow, "{q} -> {out}");
        let (seen, all, _) = survey(&parser::parse(&out).unwrap(), &tenant);
        assert!(seen == 1 && all, "{out}");
    }
}

#[test]
fn stand_in_verification_refuses_output_that_differs_from_the_tree() {
    use super::promql::verify_enforced;
    let tenant = t12();
    let right = r#"sum(rate(up{code=~"5..",job="a",tenant_id=~"t1|t2"}[5m]))"#;
    let mut enforced = parser::parse(right).unwrap();
    let n = super::walk::visit_selectors(&mut enforced, 0, &mut |vs| {
        super::matchers::sort_matchers(&mut vs.matchers.matchers);
        Ok(())
    });
    assert_eq!(n, Ok(1));
    let mut result = Err(EnforceError::TooDeep { limit: 0 });
    let slow = slow_verifications(|| result = verify_enforced(right, &enforced, 1, &tenant));
    assert_eq!((result, slow), (Ok(()), 0));
    for wrong in [
        // Another tenant, a dropped matcher, a changed regex value, a regex turned into an
        // equality, a changed selector, an extra selector, a stand-in in place of the real
        // matcher, a changed range.
        r#"sum(rate(up{code=~"5..",job="a",tenant_id=~"t1|t3"}[5m]))"#.to_string(),
        r#"sum(rate(up{code=~"5..",job="a"}[5m]))"#.to_string(),
        r#"sum(rate(up{code=~"5.x",job="a",tenant_id=~"t1|t2"}[5m]))"#.to_string(),
        r#"sum(rate(up{code="5..",job="a",tenant_id=~"t1|t2"}[5m]))"#.to_string(),
        r#"sum(rate(up{code=~"5..",job="b",tenant_id=~"t1|t2"}[5m]))"#.to_string(),
        r#"sum(rate(up{code=~"5..",job="a",tenant_id=~"t1|t2"}[5m])) + up{tenant_id=~"t1|t2"}"#
            .to_string(),
        format!(
            r#"sum(rate(up{{code=~"5..",job="a",{}}}[5m]))"#,
            stand_in(0, "=", "t1|t2")
        ),
        r#"sum(rate(up{code=~"5..",job="a",tenant_id=~"t1|t2"}[1m]))"#.to_string(),
    ] {
        let mut result = Ok(());
        let slow = slow_verifications(|| result = verify_enforced(&wrong, &enforced, 1, &tenant));
        assert!(
            matches!(result, Err(EnforceError::Verification { .. })),
            "{wrong}: {result:?}"
        );
        // The swapped check refused it, so the check of the text as printed had the last word.
        assert_eq!(slow, 1, "{wrong}");
    }
}

#[test]
fn golden_same_label_multi_tenant() {
    check_golden(
        &t12(),
        &[
            ("up", r#"up{tenant_id=~"t1|t2"}"#),
            (
                r#"up{tenant_id="t1"}"#,
                r#"up{tenant_id="t1",tenant_id=~"t1|t2"}"#,
            ),
            (
                r#"up{tenant_id="t2"}"#,
                r#"up{tenant_id="t2",tenant_id=~"t1|t2"}"#,
            ),
            (
                r#"up{tenant_id!="t1"}"#,
                r#"up{tenant_id!="t1",tenant_id=~"t1|t2"}"#,
            ),
            (
                r#"up{tenant_id!="t3"}"#,
                r#"up{tenant_id!="t3",tenant_id=~"t1|t2"}"#,
            ),
            (
                r#"up{tenant_id=~"t1|t3"}"#,
                r#"up{tenant_id=~"t1|t2",tenant_id=~"t1|t3"}"#,
            ),
            (r#"up{tenant_id=~"t1|t2"}"#, r#"up{tenant_id=~"t1|t2"}"#),
            (
                r#"up{tenant_id=~"t2|t1"}"#,
                r#"up{tenant_id=~"t1|t2",tenant_id=~"t2|t1"}"#,
            ),
            (
                r#"up{tenant_id!~"t1"}"#,
                r#"up{tenant_id!~"t1",tenant_id=~"t1|t2"}"#,
            ),
            (
                r#"sum by (tenant_id) (rate(x{tenant_id="t2"}[5m]))"#,
                r#"sum by (tenant_id) (rate(x{tenant_id="t2",tenant_id=~"t1|t2"}[5m]))"#,
            ),
        ],
    );
    check_refused(
        &t12(),
        &[
            (r#"up{tenant_id="t3"}"#, "disjoint"),
            (r#"up{tenant_id=""}"#, "disjoint"),
            (r#"up{tenant_id=~"t3|t4"}"#, "disjoint"),
            (r#"up{tenant_id!~"t1|t2"}"#, "disjoint"),
            (r#"up{tenant_id!~"t.*"}"#, "disjoint"),
            // The pattern `t1|t2` is one value for the purpose of `=`.
            (r#"up{tenant_id="t1|t2"}"#, "disjoint"),
        ],
    );
}

#[test]
fn golden_regex_quoting() {
    let t = special();
    assert_eq!(
        t.values(),
        ["a.b", "c|d", "e\"f", "g\\h", "x+y*z?(1)[2]{3}^$", "ü-ñ"]
    );
    let m = r#"tenant_id=~"a\\.b|c\\|d|e\"f|g\\\\h|x\\+y\\*z\\?\\(1\\)\\[2\\]\\{3\\}\\^\\$|ü-ñ""#;
    assert_eq!(t.selector(), format!("{{{m}}}"));
    check_golden(
        &t,
        &[
            ("up", &format!("up{{{m}}}")),
            (
                r#"up{tenant_id="c|d"}"#,
                &format!(r#"up{{tenant_id="c|d",{m}}}"#),
            ),
            (
                r#"up{tenant_id="e\"f"}"#,
                &format!(r#"up{{tenant_id="e\"f",{m}}}"#),
            ),
            (
                r#"up{tenant_id="g\\h"}"#,
                &format!(r#"up{{tenant_id="g\\h",{m}}}"#),
            ),
            (
                r#"up{tenant_id=~"ü.*"}"#,
                &format!(r#"up{{{m},tenant_id=~"ü.*"}}"#),
            ),
        ],
    );
    check_refused(
        &t,
        &[
            // Would match "axb" if `.` were not quoted; here it matches nothing allowed.
            (r#"up{tenant_id="axb"}"#, "disjoint"),
            (r#"up{tenant_id="c"}"#, "disjoint"),
            (r#"up{tenant_id="d"}"#, "disjoint"),
        ],
    );
    // The enforced regex matches exactly the values, nothing the metacharacters would add.
    let parsed = parser::parse(&t.selector()).expect("selector parses");
    let Expr::VectorSelector(vs) = parsed else {
        panic!("not a selector")
    };
    let matcher = &vs.matchers.matchers[0];
    for v in t.values() {
        assert!(matcher.is_match(v), "{v}");
    }
    for not in ["axb", "c", "d", "", "x+y*z?(1)[2]{3}^", "xyyyz1", "a.b|c|d"] {
        assert!(!matcher.is_match(not), "{not}");
    }

    // One value with special characters uses `=` and string escaping only.
    let one = TenantMatcher::new("tenant_id", ["e\"f\\g.h"]).expect("valid");
    assert_eq!(one.selector(), r#"{tenant_id="e\"f\\g.h"}"#);
    assert_eq!(
        enforce_query("up", &one).as_deref(),
        Ok(r#"up{tenant_id="e\"f\\g.h"}"#)
    );
}

#[test]
fn tenant_matcher_api() {
    let t = t12();
    assert_eq!(t.label(), "tenant_id");
    assert_eq!(t.values(), ["t1", "t2"]);
    assert!(t.allows("t1") && t.allows("t2"));
    assert!(!t.allows("t3") && !t.allows("") && !t.allows("t1|t2"));
    assert_eq!(t.selector(), r#"{tenant_id=~"t1|t2"}"#);
    assert_eq!(t1().selector(), r#"{tenant_id="t1"}"#);
    assert_eq!(
        TenantMatcher::new("team", vec![String::from("b"), String::from("a")])
            .map(|t| t.selector()),
        Ok(r#"{team=~"a|b"}"#.to_string())
    );
    // Duplicates collapse to a single value and thus to `=`.
    assert_eq!(
        TenantMatcher::new("tenant_id", ["x", "x"]).map(|t| t.selector()),
        Ok(r#"{tenant_id="x"}"#.to_string())
    );

    let empty: [&str; 0] = [];
    for (label, values) in [
        ("tenant_id", &empty[..]),
        ("tenant_id", &[""][..]),
        ("tenant_id", &["a", ""][..]),
        ("", &["a"][..]),
        ("__name__", &["a"][..]),
        ("__tenant", &["a"][..]),
        ("tenant.id", &["a"][..]),
        ("1tenant", &["a"][..]),
    ] {
        let err = TenantMatcher::new(label, values.iter().copied());
        assert!(
            matches!(err, Err(EnforceError::InvalidTenant { .. })),
            "{label:?} {values:?}: {err:?}"
        );
    }
}

#[test]
fn refused_or_matcher_groups() {
    check_refused(
        &t1(),
        &[
            (r#"up{job="a" or job="b"}"#, "unsupported"),
            (r#"{job="a" or tenant_id="t1"}"#, "unsupported"),
            (r#"up{tenant_id="t1" or tenant_id="t2"}"#, "unsupported"),
            (r#"sum(rate(up{job="a" or job="b"}[5m]))"#, "unsupported"),
            (r#"up + on(job) x{a="1", b="2" or c="3"}"#, "unsupported"),
        ],
    );
    let err = enforce_query(r#"up{job="a" or job="b"}"#, &t1()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported query: label matchers combined with `or` inside braces"
    );
}

#[test]
fn refused_info() {
    check_refused(
        &t12(),
        &[
            ("info(up)", "unsupported"),
            (r#"info(up, {k8s_cluster_name=~".+"})"#, "unsupported"),
            ("sum by (job) (info(rate(x[5m])))", "unsupported"),
            ("up * on(job) group_left info(x)", "unsupported"),
        ],
    );
}

#[test]
fn refused_printer_losses() {
    check_refused(
        &t1(),
        &[
            // promql-parser prints a negative @ timestamp as `@ 0.000`.
            ("up @ -1.5", "verify"),
            ("rate(up[5m] @ -100)", "verify"),
            // `ignoring ()` is dropped from the output, leaving an invalid bare group_left.
            ("a * ignoring() group_left b", "verify"),
            ("a * ignoring() group_right(x) b", "verify"),
            // NaN fill values never compare equal.
            ("a + fill(NaN) b", "verify"),
        ],
    );
}

#[test]
fn refused_parse_errors() {
    check_refused(
        &t1(),
        &[
            ("", "parse"),
            ("   ", "parse"),
            ("# only a comment", "parse"),
            ("up{", "parse"),
            ("up{job=}", "parse"),
            ("sum(", "parse"),
            ("up[5m", "parse"),
            ("up)", "parse"),
            ("foo(bar)", "parse"),
            ("rate(up)", "parse"),
            (r#"{job=~".*"}"#, "parse"),
            (r#"up{__name__="x"}"#, "parse"),
            ("up[5m][5m]", "parse"),
            ("\"unterminated", "parse"),
            ("up offset 5m offset 5m", "parse"),
            ("1 > 2", "parse"),
            ("\u{0}", "parse"),
            ("up{job=\"a\"}}", "parse"),
            (r#"up{job="\q"}"#, "parse"),
            // promql-parser treats `\` in backtick strings as an escape (Prometheus does not),
            // so such queries are refused rather than misread.
            ("up{job=~`a\\d`}", "parse"),
        ],
    );
    let err = enforce_query("foo(bar)", &t1()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parse error: unknown function with name 'foo'"
    );
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let t = t1();
    let deep = [
        format!("{}up{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("{}up", "-".repeat(10_000)),
        format!("up{}", " + up".repeat(10_000)),
        format!("1{}", "+1".repeat(30_000)),
        format!("{}up{}", "abs(".repeat(5_000), ")".repeat(5_000)),
        format!("{}up{}", "sum(".repeat(5_000), ")".repeat(5_000)),
        format!(
            "{}up{}",
            "max_over_time(".repeat(2_000),
            "[5m:])".repeat(2_000)
        ),
        // Unbalanced: the parser must not even be reached.
        "(".repeat(60_000),
        format!("{}up", "[".repeat(60_000)),
    ];
    for q in &deep {
        let r = enforce_query(q, &t);
        assert_eq!(
            r.as_ref().map_err(|e| e.reason()),
            Err("too_deep"),
            "{}",
            &q[..40]
        );
    }
    assert_eq!(
        enforce_query(&deep[0], &t).unwrap_err().to_string(),
        "query nested too deeply: more than 256 levels"
    );
    let sel = vec![deep[0].as_str()];
    assert_eq!(
        enforce_match_selectors(&sel, &t).map_err(|e| e.reason()),
        Err("too_deep")
    );
}

#[test]
fn moderate_nesting_is_accepted() {
    let t = t1();
    let q = format!("{}up{}", "(".repeat(200), ")".repeat(200));
    let want = format!(
        "{}up{{tenant_id=\"t1\"}}{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert_eq!(enforce_query(&q, &t), Ok(want));
    let q = format!("up{}", " + up".repeat(200));
    assert!(enforce_query(&q, &t).is_ok());
    // Brackets inside strings and comments do not count as nesting.
    let q = format!(
        "up{{job=\"{p}\",x='{p}',y=`{p}`}} # {p}\n + count_values(\"{p}\", up)",
        p = "((([[[".repeat(2_000)
    );
    assert!(enforce_query(&q, &t).is_ok());
    // Escaped quotes do not end a string early.
    let q = format!("up{{job=\"\\\"{}\"}}", "(".repeat(1_000));
    assert!(enforce_query(&q, &t).is_ok());
}

#[test]
fn depth_bound_is_an_upper_bound() {
    fn depth(e: &Expr) -> usize {
        1 + match e {
            Expr::Aggregate(a) => a.param.as_deref().map_or(0, depth).max(depth(&a.expr)),
            Expr::Unary(u) => depth(&u.expr),
            Expr::Binary(b) => depth(&b.lhs).max(depth(&b.rhs)),
            Expr::Paren(p) => depth(&p.expr),
            Expr::Subquery(s) => depth(&s.expr),
            Expr::Call(c) => c.args.args.iter().map(|a| depth(a)).max().unwrap_or(0),
            _ => 0,
        }
    }
    for q in [
        "up",
        "a + b * c",
        "-a ^ -b",
        "sum by (job) (rate(x[5m]))",
        "max_over_time(deriv(rate(x[1m])[10m:])[1h:5m] offset 2h)",
        "topk(5, a) / on(job) group_left(x) -(b - c)",
        "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        "a and b or c unless d atan2 e",
        "((((up))))",
        "abs(-(-(-up)))",
    ] {
        let e = parser::parse(q).expect("valid");
        assert!(
            scan::depth_bound(q) >= depth(&e),
            "{q}: bound {} < depth {}",
            scan::depth_bound(q),
            depth(&e)
        );
    }
}

#[test]
fn huge_query_is_refused() {
    let t = t1();
    let q = format!("up{}", " ".repeat(MAX_QUERY_BYTES - 2));
    assert_eq!(q.len(), MAX_QUERY_BYTES);
    assert_eq!(
        enforce_query(&q, &t).as_deref(),
        Ok(r#"up{tenant_id="t1"}"#)
    );
    let q = format!("up{}", " ".repeat(MAX_QUERY_BYTES - 1));
    let err = enforce_query(&q, &t).unwrap_err();
    assert_eq!(err.reason(), "too_large");
    assert_eq!(
        err.to_string(),
        "query too large: 65537 bytes, the limit is 65536 bytes"
    );
    let big = format!("up{{job=\"{}\"}}", "x".repeat(MAX_QUERY_BYTES));
    assert_eq!(
        enforce_match_selectors(&[big.as_str()], &t).map_err(|e| e.reason()),
        Err("too_large")
    );
}

#[test]
fn output_size_is_bounded() {
    // 2000 tenants of 40 bytes make an 80 KB regex; 100 selectors would print 8 MB.
    let values: Vec<String> = (0..2000).map(|i| format!("{i:040}")).collect();
    let t = TenantMatcher::new("tenant_id", values).expect("valid");
    let q = format!("up{}", " + up".repeat(100));
    assert_eq!(
        enforce_query(&q, &t).map_err(|e| e.reason()),
        Err("too_large")
    );
    assert!(enforce_query("up + up", &t).is_ok());
}

#[test]
fn match_selectors() {
    let t = t1();
    assert_eq!(
        enforce_match_selectors(&[], &t),
        Ok(vec![r#"{tenant_id="t1"}"#.to_string()])
    );
    assert_eq!(
        enforce_match_selectors(&[], &t12()),
        Ok(vec![r#"{tenant_id=~"t1|t2"}"#.to_string()])
    );
    assert_eq!(
        enforce_match_selectors(
            &[
                "up",
                r#"{job="a"}"#,
                r#"{__name__=~"up|down"}"#,
                r#"{"my.metric"}"#,
                r#"up{tenant_id="t1",instance!=""}"#,
                r#"node_cpu_seconds_total{mode!~"idle|iowait", tenant_id=~"t.*"}"#,
            ],
            &t
        ),
        Ok(vec![
            r#"up{tenant_id="t1"}"#.to_string(),
            r#"{job="a",tenant_id="t1"}"#.to_string(),
            r#"{__name__=~"up|down",tenant_id="t1"}"#.to_string(),
            r#"{__name__="my.metric",tenant_id="t1"}"#.to_string(),
            r#"up{instance!="",tenant_id="t1"}"#.to_string(),
            r#"node_cpu_seconds_total{mode!~"idle|iowait",tenant_id="t1",tenant_id=~"t.*"}"#
                .to_string(),
        ])
    );
    assert_eq!(
        enforce_match_selectors(&["up", r#"x{tenant_id="t2"}"#], &t12()),
        Ok(vec![
            r#"up{tenant_id=~"t1|t2"}"#.to_string(),
            r#"x{tenant_id="t2",tenant_id=~"t1|t2"}"#.to_string(),
        ])
    );

    for (input, reason) in [
        (r#"up{tenant_id="t2"}"#, "disjoint"),
        (r#"up{tenant_id!~"t1"}"#, "disjoint"),
        ("rate(up[5m])", "not_a_selector"),
        ("up[5m]", "not_a_selector"),
        ("up offset 5m", "not_a_selector"),
        ("up @ 100", "not_a_selector"),
        ("sum(up)", "not_a_selector"),
        ("(up)", "not_a_selector"),
        ("-up", "not_a_selector"),
        ("up + up", "not_a_selector"),
        ("1", "not_a_selector"),
        (r#""up""#, "not_a_selector"),
        ("info(up)", "not_a_selector"),
        (r#"up{job="a" or job="b"}"#, "unsupported"),
        ("up{", "parse"),
        ("", "parse"),
    ] {
        assert_eq!(
            enforce_match_selectors(&["up", input], &t).map_err(|e| e.reason()),
            Err(reason),
            "{input}"
        );
    }
    let err = enforce_match_selectors(&["rate(up[5m])"], &t).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid match[] rate(up[5m]): expected a series selector such as up{job=\"a\"}, without functions, operators, offset or @"
    );
    let long = format!("sum({})", "a".repeat(500));
    match enforce_match_selectors(&[long.as_str()], &t) {
        Err(EnforceError::NotASelector { input }) => assert_eq!(input.len(), 203),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_messages_and_reasons() {
    let t = t1();
    let cases: Vec<(EnforceError, &str, &str)> = vec![
        (
            enforce_query(r#"up{tenant_id="t2"}"#, &t).unwrap_err(),
            "disjoint",
            r#"label matcher tenant_id="t2" selects no series of the tenants this request may read (label "tenant_id")"#,
        ),
        (
            enforce_query("up{", &t).unwrap_err(),
            "parse",
            "parse error: unexpected end of input inside braces",
        ),
        (
            enforce_query("info(up)", &t).unwrap_err(),
            "unsupported",
            "unsupported query: the info() function",
        ),
        (
            enforce_query("up @ -1", &t).unwrap_err(),
            "verify",
            "query refused: the tenant-enforced rewrite could not be verified (the printed query differs from the rewritten one)",
        ),
        (
            TenantMatcher::new("tenant_id", [""]).unwrap_err(),
            "invalid_tenant",
            "invalid tenant matcher: a tenant value must not be empty",
        ),
    ];
    for (err, reason, message) in cases {
        assert_eq!(err.reason(), reason);
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn enforcement_is_idempotent_on_goldens() {
    for t in [t1(), t12(), special()] {
        for q in [
            "up",
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
            "max_over_time(deriv(rate(x[1m])[10m:])[1h:5m] offset 2h)",
            "a * on(job) group_left(team) b or vector(0)",
            r#"{"my.metric", "foo.bar"="x"}"#,
        ] {
            let once = enforce_query(q, &t).expect("enforced");
            assert_eq!(enforce_query(&once, &t), Ok(once.clone()), "{q}");
        }
    }
}

// ---- property tests ----------------------------------------------------------------------

/// Walks a parsed tree: (selector count, all selectors carry `want`, any or-groups).
fn survey(e: &Expr, want: &TenantMatcher) -> (usize, bool, bool) {
    fn sel(m: &Matchers, want: &TenantMatcher) -> (usize, bool, bool) {
        let has = m.matchers.iter().any(|x| {
            x.name == want.label() && x.to_string() == want.selector()[1..want.selector().len() - 1]
        });
        (1, has, !m.or_matchers.is_empty())
    }
    let add = |a: (usize, bool, bool), b: (usize, bool, bool)| (a.0 + b.0, a.1 && b.1, a.2 || b.2);
    let none = (0, true, false);
    match e {
        Expr::Aggregate(a) => add(
            a.param.as_deref().map_or(none, |p| survey(p, want)),
            survey(&a.expr, want),
        ),
        Expr::Unary(u) => survey(&u.expr, want),
        Expr::Binary(b) => add(survey(&b.lhs, want), survey(&b.rhs, want)),
        Expr::Paren(p) => survey(&p.expr, want),
        Expr::Subquery(s) => survey(&s.expr, want),
        Expr::VectorSelector(vs) => sel(&vs.matchers, want),
        Expr::MatrixSelector(ms) => sel(&ms.vs.matchers, want),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .fold(none, |acc, a| add(acc, survey(a, want))),
        _ => none,
    }
}

/// Whether some matcher on the tenant label selects none of the allowed values.
fn has_disjoint(e: &Expr, t: &TenantMatcher) -> bool {
    let sel = |m: &Matchers| {
        m.matchers
            .iter()
            .filter(|x| x.name == t.label())
            .any(|x| !t.values().iter().any(|v| x.is_match(v)))
    };
    match e {
        Expr::Aggregate(a) => {
            a.param.as_deref().is_some_and(|p| has_disjoint(p, t)) || has_disjoint(&a.expr, t)
        }
        Expr::Unary(u) => has_disjoint(&u.expr, t),
        Expr::Binary(b) => has_disjoint(&b.lhs, t) || has_disjoint(&b.rhs, t),
        Expr::Paren(p) => has_disjoint(&p.expr, t),
        Expr::Subquery(s) => has_disjoint(&s.expr, t),
        Expr::VectorSelector(vs) => sel(&vs.matchers),
        Expr::MatrixSelector(ms) => sel(&ms.vs.matchers),
        Expr::Call(c) => c.args.args.iter().any(|a| has_disjoint(a, t)),
        _ => false,
    }
}

fn arb_matcher() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["job", "tenant_id", "instance", "\"foo.bar\""]),
        prop::sample::select(vec!["=", "!=", "=~", "!~"]),
        prop::sample::select(vec![
            "t1", "t2", "t3", "", ".*", ".+", "t.*", "t1|t3", "a.b", "c|d", "e\\\"f", "x",
        ]),
    )
        .prop_map(|(l, op, v)| format!("{l}{op}\"{v}\""))
}

fn arb_selector() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["up", "http_requests_total", "job:x:rate5m", ""]),
        prop::collection::vec(arb_matcher(), 0..3),
        prop::option::of(prop::sample::select(vec![
            "{\"my.metric\"}",
            "{__name__=~\"up|x\"}",
        ])),
        prop::sample::select(vec![
            "",
            " offset 5m",
            " @ 100",
            " @ start()",
            " offset -1h",
        ]),
    )
        .prop_map(|(name, matchers, utf8, suffix)| match utf8 {
            Some(u) if matchers.is_empty() => format!("{u}{suffix}"),
            _ if name.is_empty() && matchers.is_empty() => format!("up{suffix}"),
            _ => format!("{name}{{{}}}{suffix}", matchers.join(",")),
        })
}

fn arb_query() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => arb_selector(),
        1 => prop::sample::select(vec!["1", "-2.5", "vector(1)", "time()", "NaN"]).prop_map(String::from),
        2 => arb_selector().prop_map(|s| {
            // Only a selector without offset/@ may take a range.
            match s.split_once(' ') {
                Some((sel, rest)) => format!("rate({sel}[5m] {rest})"),
                None => format!("rate({s}[5m])"),
            }
        }),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "and", "or", "unless", "> bool", "== bool"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    " on(job)",
                    " ignoring(instance)",
                    " on(job) group_left(x)",
                    " ignoring(a) group_right()"
                ]),
                inner.clone()
            )
                .prop_map(|(a, m, b)| format!("({a}) *{m} ({b})")),
            (
                prop::sample::select(vec!["sum", "max", "count", "avg"]),
                prop::sample::select(vec!["", " by (job)", " without (instance)", " by ()"]),
                inner.clone()
            )
                .prop_map(|(op, m, e)| format!("{op}{m} ({e})")),
            inner.clone().prop_map(|e| format!("topk(3, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            inner.clone().prop_map(|e| format!("({e})")),
            inner.clone().prop_map(|e| format!("-{e}")),
            inner.clone().prop_map(|e| format!("abs({e})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"a\", \"$1\", \"b\", \"(.*)\")")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    "[5m:]",
                    "[1h:1m]",
                    "[10m:] offset 5m",
                    "[5m:] @ end()"
                ])
            )
                .prop_map(|(e, sq)| format!("max_over_time(({e}){sq})")),
            inner.clone().prop_map(|e| format!("absent({e})")),
        ]
    })
}

fn arb_tenant() -> impl Strategy<Value = TenantMatcher> {
    prop::sample::select(vec![0usize, 1, 2]).prop_map(|i| match i {
        0 => t1(),
        1 => t12(),
        _ => special(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The output parses and every selector carries the enforced matcher, or the query is
    /// refused for a reason that holds.
    #[test]
    fn prop_enforced_or_refused(q in arb_query(), t in arb_tenant()) {
        let input = parser::parse(&q);
        match enforce_query(&q, &t) {
            Ok(out) => {
                let input = input.expect("accepted input parses");
                let output = parser::parse(&out).expect("output parses");
                let (n_in, _, _) = survey(&input, &t);
                let (n_out, all, or) = survey(&output, &t);
                prop_assert_eq!(n_in, n_out);
                prop_assert!(all, "selector without tenant matcher in {}", out);
                prop_assert!(!or);
                prop_assert!(!has_disjoint(&input, &t));
                // Enforcing again changes nothing.
                prop_assert_eq!(enforce_query(&out, &t), Ok(out.clone()));
            }
            Err(EnforceError::Parse { .. }) => prop_assert!(input.is_err(), "valid input refused as parse error: {}", q),
            Err(EnforceError::Disjoint { .. }) => {
                let input = input.expect("disjoint input parses");
                prop_assert!(has_disjoint(&input, &t));
            }
            Err(e) => prop_assert!(false, "unexpected refusal {:?} of {}", e, q),
        }
    }

    /// No input makes the enforcer panic; whatever it accepts is enforced.
    #[test]
    fn prop_no_panic_on_arbitrary_text(q in "[a-z_{}()\\[\\]\"'`=~!<>+*/%^,:@.#\\\\ 0-9\n-]{0,80}") {
        if let Ok(out) = enforce_query(&q, &t12()) {
            let output = parser::parse(&out).expect("output parses");
            let (_, all, or) = survey(&output, &t12());
            prop_assert!(all && !or);
        }
        let _ = enforce_match_selectors(&[q.as_str()], &t1());
    }

    /// Token soup built from real PromQL pieces reaches deeper into the parser than raw text.
    #[test]
    fn prop_no_panic_on_token_soup(tokens in prop::collection::vec(prop::sample::select(vec![
        "up", "{", "}", "(", ")", "[5m]", "[5m:]", "[", "]", "job=\"a\"", "tenant_id=\"t2\"", "tenant_id=~\".*\"",
        ",", " or ", " and ", "+", "-", "*", "/", "^", " by (job) ", "sum", "rate", "abs", "info", " offset 5m",
        " @ 100", " @ -1", " @ start()", "1", "\"s\"", " bool ", " on(job) ", " group_left ", "#c\n", "{\"a.b\"}",
    ]), 0..24)) {
        let q = tokens.concat();
        if let Ok(out) = enforce_query(&q, &t1()) {
            let output = parser::parse(&out).expect("output parses");
            let (_, all, or) = survey(&output, &t1());
            prop_assert!(all && !or);
        }
    }
}

// --- Deferred regexes: the fast path's outcome is the general path's, for every input. ---

#[path = "../../../../benches/support/queries.rs"]
mod bench_queries;

/// Asserts both paths agree on `q` for every test tenant, as a query and as a `match[]`
/// selector; returns how many of those six rewrites the deferred path decided.
fn agree(q: &str) -> usize {
    use super::deferred::TAKEN;
    let taken = || TAKEN.with(|n| n.get());
    let before = taken();
    for t in [t1(), t12(), special()] {
        let (fast, general) = (enforce_query(q, &t), enforce_query_general(q, &t));
        assert_eq!(fast, general, "query {q:?} for {:?}", t.values());
        let (fast, general) = (
            enforce_match_selector(q, &t),
            enforce_match_selector_general(q, &t),
        );
        assert_eq!(fast, general, "match[] {q:?} for {:?}", t.values());
    }
    taken() - before
}

#[test]
fn deferred_regexes_on_the_benchmark_queries() {
    for q in bench_queries::DASHBOARD_QUERIES
        .iter()
        .chain(bench_queries::MATCH_SELECTORS)
    {
        let taken = agree(q);
        // Every query with a regex matcher off the tenant label takes the fast path.
        let has_regex = q.contains("=~") || q.contains("!~");
        let selector = parser::parse(q).is_ok_and(|e| matches!(e, Expr::VectorSelector(_)));
        let expected = if has_regex {
            3 * (1 + usize::from(selector))
        } else {
            0
        };
        assert_eq!(taken, expected, "{q}");
    }
}

#[test]
fn canonical_reading_verifies_the_benchmark_queries() {
    use super::promql::CANONICAL_PROOFS;
    let proofs = || CANONICAL_PROOFS.with(|n| n.get());
    for t in [t1(), t12()] {
        for q in bench_queries::DASHBOARD_QUERIES {
            let before = proofs();
            enforce_query(q, &t).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(
                proofs() - before,
                1,
                "not proven without promql-parser: {q}"
            );
        }
        let before = proofs();
        enforce_match_selectors(bench_queries::MATCH_SELECTORS, &t).expect("match[]");
        assert_eq!(proofs() - before, bench_queries::MATCH_SELECTORS.len());
    }
}

#[test]
fn deferred_regexes_fast_path_cases() {
    // (query, whether the fast path decides it for every tenant)
    let cases: &[(&str, bool)] = &[
        (r#"up{job=~"a.+"}"#, true),
        (r#"up{job!~"a.+", code=~'5..', x=~`b.+`}"#, true),
        (r#"up{ job =~ "a" , code	!~	"5.." }"#, true),
        (r#"{job=~"a.+"}"#, true),
        (r#"{__name__=~"kube_.+"}"#, true),
        (
            r#"rate(x{a=~"\\.\"q"}[5m:1m] offset 1h) / on(a) y{b!~"c|d"}"#,
            true,
        ),
        (r#"x{a=~"[^\\s\\S]"}"#, true),
        (r#"{a=~"[^\\s\\S]"}"#, true),
        (r#"sum by (a) (x{a=~"a", a=~"a"}) or x{a=~"a"}"#, true),
        (
            r#"label_replace(x{a=~"b"}, "a", "$1", "job=~\"x\"", "(.*)")"#,
            true,
        ),
        // Left to the general path.
        (r#"{job=~".*"}"#, false), // matches "": only the regex can tell
        (r#"{job!~"a"}"#, false),  // likewise
        (r#"{job=~"a*"}"#, false), // minimum length 0
        (r#"up{__name__=~"x"}"#, false), // metric name set twice
        (r#"up{job=~"("}"#, false), // invalid regex
        (r#"up{job=~"a{2}"}"#, false), // counted repetition
        (r#"up{job=~"a{b}c"}"#, false), // Go-style literal brace
        (r#"up{a="1" or b=~"x"}"#, false), // or-groups are refused
        (r#"up{tenant_id=~"t1|t3"}"#, false), // the tenant label is always compiled
        (r#"up{"job"=~"a"}"#, false), // a quoted name
        (
            r#"up{job # c
            =~"a"}"#,
            false,
        ),
        (
            r#"up # {job=~"a"}
            "#,
            false,
        ),
        (r#""{job=~\"a\"}""#, false),
        (r#"up{or =~"a"}"#, false),
        (r#"up{job=~~"a"}"#, false),
        (r#"up{job=~"a"} =~ "b""#, false),
        (r#"up{job="x"=~"a"}"#, false),
    ];
    for (q, fast) in cases {
        let taken = agree(q);
        if *fast {
            assert!(taken >= 3, "{q} took the fast path {taken} times");
        } else {
            assert_eq!(taken, 0, "{q} took the fast path");
        }
    }
    // A value longer than the deferral limit is compiled.
    let long = format!("up{{job=~\"{}\"}}", "a".repeat(300));
    assert_eq!(agree(&long), 0);
}

#[test]
fn deferred_regexes_are_never_evaluated_nor_printed_as_placeholders() {
    // Same-label checks still see the compiled tenant-label regexes; the placeholders of the
    // others print as the user's regex.
    let q = r#"up{job=~"a|b", tenant_id=~"t1|t3"} / up{job!~"c", tenant_id!~"t1"}"#;
    agree(q);
    let out = enforce_query(r#"up{job=~"a|b", tenant_id=~"t1|t3"}"#, &t12()).unwrap();
    assert_eq!(
        out,
        r#"up{job=~"a|b",tenant_id=~"t1|t2",tenant_id=~"t1|t3"}"#
    );
    assert!(matches!(
        enforce_query(r#"up{job=~"a|b", tenant_id=~"t3"}"#, &t12()),
        Err(EnforceError::Disjoint { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn prop_deferred_path_agrees_on_queries(q in arb_query()) {
        agree(&q);
    }

    /// Valid queries with a piece of PromQL syntax inserted anywhere: inside strings,
    /// comments, braces and names, where the scan must not mistake anything for a matcher.
    #[test]
    fn prop_deferred_path_agrees_on_edited_queries(
        q in arb_query(),
        at in any::<prop::sample::Index>(),
        piece in prop::sample::select(vec![
            "{", "}", "\"", "'", "`", "\\", "#", "\n", " ", ",", " or ", "=~", "!~", "~", "=",
            "job=~\"a.+\"", "x!~'b'", "__name__=~\"u.+\"", "tenant_id=~\"t.+\"", "{a=~\"b\"}",
            "\"{a=~\\\"b\\\"}\"", "# a=~\"b\"\n", "or", "{\"a\"=~\"b\"}", "a{2}", "(", ")",
        ]),
    ) {
        let mut at = at.index(q.len() + 1);
        while !q.is_char_boundary(at) {
            at -= 1;
        }
        agree(&format!("{}{piece}{}", &q[..at], &q[at..]));
    }

    #[test]
    fn prop_deferred_path_agrees_on_text(q in "[a-z_{}()\\[\\]\"'`=~!<>+*/%^,:@.#\\\\ 0-9\n-]{0,60}") {
        agree(&q);
    }
}
