#!/usr/bin/env python3
"""bench/report.py RAW_DIR OUT_DIR META_JSON — turns bench/run.sh's raw results into
OUT_DIR/latest.json, latest.md and latest.png, and prints the markdown table."""
import bisect
import json
import os
import sys
from pathlib import Path

raw, out, meta = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)


def load(name):
    p = raw / f"{name}.json"
    return json.load(open(p)) if p.exists() else None


def pooled_cdf(records):
    """The rounds' latencies taken together, as (latency µs, share of requests at or below it)
    at every latency some round's curve reports. Each round's distribution is known at its curve
    points (1..99, 99.5, 99.9, 99.95, 99.99 %) and counts with its request count; at a given
    latency it counts the highest of its points not above that latency."""
    total = sum(r["wrk"]["requests"] for r in records) or 1
    curves = [([v for _, v in r["wrk"]["curve"]], [p for p, _ in r["wrk"]["curve"]], r["wrk"]["requests"] / total)
              for r in records]
    cdf = []
    for x in sorted({v for vs, _, _ in curves for v in vs}):
        share = 0.0
        for vs, ps, weight in curves:
            i = bisect.bisect_right(vs, x)
            share += (ps[i - 1] if i else 0.0) * weight
        cdf.append((x, share))
    return cdf


def pooled_quantile(cdf, q):
    """The smallest reported latency at which the pooled share reaches q percent."""
    return next((x for x, share in cdf if share >= q - 1e-9), cdf[-1][0])


def pool(records):
    """One record for a target measured in several rounds: counts and CPU summed, latency
    percentiles of the pooled distribution; `rounds` keeps each round's own figures."""
    ws = [r["wrk"] for r in records]
    points = [p for p, _ in ws[0]["curve"]]
    requests = sum(w["requests"] for w in ws)
    cdf = pooled_cdf(records)
    wrk = {
        "requests": requests,
        "duration_us": sum(w["duration_us"] for w in ws),
        "bytes": sum(w["bytes"] for w in ws),
        "errors": {k: sum(w["errors"][k] for w in ws) for k in ws[0]["errors"]},
        "latency_us": {
            "min": min(w["latency_us"]["min"] for w in ws),
            "max": max(w["latency_us"]["max"] for w in ws),
            "mean": sum(w["latency_us"]["mean"] * w["requests"] for w in ws) / max(requests, 1),
            "p": {k: pooled_quantile(cdf, float(k)) for k in ws[0]["latency_us"]["p"]},
        },
        "curve": [[p, pooled_quantile(cdf, p)] for p in points],
    }
    return {
        "connections": records[0]["connections"],
        "duration_s": sum(r["duration_s"] for r in records),
        "cpu_ticks": sum(r["cpu_ticks"] for r in records),
        "cpu_user_ticks": sum(r.get("cpu_user_ticks", 0) for r in records),
        "clk_tck": records[0]["clk_tck"],
        "loadavg": " / ".join(r["loadavg"] for r in records),
        "wrk": wrk,
        "rounds": [summary(r) for r in records],
    }


def summary(r):
    """req/s, p99 and CPU per request (all, and the user-space part) of one wrk record."""
    w = r["wrk"]
    per_req = lambda ticks: ticks / r["clk_tck"] * 1e6 / max(w["requests"], 1)
    return {
        "rps": w["requests"] / (w["duration_us"] / 1e6),
        "p99_ms": w["latency_us"]["p"]["99"] / 1e3,
        "cpu_us_per_req": per_req(r["cpu_ticks"]),
        "user_us_per_req": per_req(r.get("cpu_user_ticks", 0)),
    }


def rounds_of(name):
    paths = sorted((raw / "rounds").glob(f"{name}.*.json"), key=lambda p: int(p.suffixes[-2][1:]))
    records = [json.load(open(p)) for p in paths]
    return [r for r in records if r.get("wrk")]


def phase(name):
    r = load(name)
    if r is None:
        records = rounds_of(name)
        r = pool(records) if records else None
    if not r or not r.get("wrk"):
        return None
    w = r["wrk"]
    secs = w["duration_us"] / 1e6
    p = w["latency_us"]["p"]
    return {
        "name": name,
        "connections": r["connections"],
        "requests": w["requests"],
        **summary(r),
        "p50_ms": p["50"] / 1e3,
        "p90_ms": p["90"] / 1e3,
        "p99_9_ms": p["99.9"] / 1e3,
        "max_ms": w["latency_us"]["max"] / 1e3,
        "cpu_cores": r["cpu_ticks"] / r["clk_tck"] / secs,
        "errors": sum(w["errors"].values()),
        "non2xx": w["errors"]["status"],
        "loadavg": r["loadavg"],
        "curve": w["curve"],
        "rounds": r.get("rounds", []),
    }


def ratio(a, b):
    return a / b if a is not None and b else None


def f(v, fmt="{:.3f}"):
    return "—" if v is None else fmt.format(v)


phases = {}
stems = {p.stem for p in raw.glob("*.json")} | {p.name.split(".")[0] for p in raw.glob("rounds/*.json")}
for name in sorted(stems - {"micro", "memory", "production"}):
    ph = phase(name)
    if ph:
        phases[name] = ph
micro = load("micro") or {}
memory = load("memory") or {}
prod_meta = load("production") or {}

P = phases.get
rd, rw, rn, rn2, rv = P("read-direct"), P("read-whizard"), P("read-nginx"), P("read-nginx-apr1"), P("read-vmauth")
rr = P("read-relay")
md, mw, mn, mv = P("moderate-direct"), P("moderate-whizard"), P("moderate-nginx"), P("moderate-vmauth")
qd, qw = P("query-direct"), P("query-whizard")

ratios = {}
if rw and rn:
    ratios["read_rps_whizard_over_nginx"] = rw["rps"] / rn["rps"]
    ratios["read_p99_whizard_over_nginx"] = rw["p99_ms"] / rn["p99_ms"]
    ratios["read_cpu_whizard_over_nginx"] = rw["cpu_us_per_req"] / rn["cpu_us_per_req"]
    ratios["read_user_cpu_whizard_over_nginx"] = ratio(rw["user_us_per_req"], rn["user_us_per_req"])
    ratios["read_kernel_cpu_whizard_over_nginx"] = ratio(rw["cpu_us_per_req"] - rw["user_us_per_req"],
                                                         rn["cpu_us_per_req"] - rn["user_us_per_req"])
if rw and rr:
    ratios["read_rps_whizard_over_relay"] = rw["rps"] / rr["rps"]
if rw and rv:
    ratios["read_rps_whizard_over_vmauth"] = rw["rps"] / rv["rps"]
    ratios["read_p99_whizard_over_vmauth"] = rw["p99_ms"] / rv["p99_ms"]
    ratios["read_cpu_whizard_over_vmauth"] = rw["cpu_us_per_req"] / rv["cpu_us_per_req"]
if rw and rd:
    ratios["read_rps_whizard_over_direct"] = rw["rps"] / rd["rps"]
if mw and md:
    ratios["moderate_added_p50_ms"] = mw["p50_ms"] - md["p50_ms"]
    ratios["moderate_added_p99_ms"] = mw["p99_ms"] - md["p99_ms"]
if mw and mn:
    ratios["moderate_p99_whizard_over_nginx"] = mw["p99_ms"] / mn["p99_ms"]
if mv and md:
    ratios["moderate_added_p99_ms_vmauth"] = mv["p99_ms"] - md["p99_ms"]
if mw and mv:
    ratios["moderate_p99_whizard_over_vmauth"] = mw["p99_ms"] / mv["p99_ms"]
# Per round: whizard against nginx (and vmauth) measured minutes apart at most.
per_round = []
if rw and rn and len(rw["rounds"]) == len(rn["rounds"]) > 1:
    vm_rounds = rv["rounds"] if rv and len(rv["rounds"]) == len(rw["rounds"]) else [None] * len(rw["rounds"])
    for i, (a, b, v) in enumerate(zip(rw["rounds"], rn["rounds"], vm_rounds), 1):
        per_round.append({
            "round": i,
            "rps_whizard_over_nginx": a["rps"] / b["rps"],
            "p99_whizard_over_nginx": a["p99_ms"] / b["p99_ms"],
            "cpu_whizard_over_nginx": a["cpu_us_per_req"] / b["cpu_us_per_req"],
            "rps_whizard_over_vmauth": a["rps"] / v["rps"] if v else None,
            "p99_whizard_over_vmauth": a["p99_ms"] / v["p99_ms"] if v else None,
        })
if qw and qd:
    ratios["query_rps_whizard_over_direct"] = qw["rps"] / qd["rps"]
    ratios["query_added_p50_ms"] = qw["p50_ms"] - qd["p50_ms"]
    ratios["query_added_p99_ms"] = qw["p99_ms"] - qd["p99_ms"]

# Remote write: codec (per core, from the micro tool) + end to end.
write = {}
for shape, codec in (micro.get("remote_write") or {}).items():
    row = {"series": codec["series"], "samples": codec["samples"], "codec": {}, "e2e": {}}
    for case in ("a_snappy_roundtrip", "a_snappy_roundtrip_fresh_buffers", "b_passthrough", "c_inject_v1",
                 "d_inject_v2", "splice_only_v1", "splice_only_v2"):
        if case in codec:
            row["codec"][case] = codec[case]
    for case in ("direct", "whizard-pass", "whizard-v1", "whizard-v2"):
        ph = P(f"write-{shape}-{case}")
        if ph:
            row["e2e"][case] = {
                "rps": ph["rps"],
                "samples_per_s": ph["rps"] * codec["samples"],
                "p99_ms": ph["p99_ms"],
                "cpu_us_per_req": ph["cpu_us_per_req"],
                "errors": ph["errors"],
            }
    row["c_over_a"] = codec["c_inject_v1"]["vs_snappy"]
    row["d_over_a"] = codec["d_inject_v2"]["vs_snappy"]
    write[shape] = row

pq = micro.get("promql_rewrite") or {}
mib = lambda k: None if k is None else k / 1024
gw_mem = memory.get("gateway_rss_kib", {})
ng_mem = memory.get("nginx_rss_kib", {})
vm_mem = memory.get("vmauth_rss_kib", {})

targets = []


def target(name, value, goal, ok):
    targets.append({"target": name, "value": value, "goal": goal, "met": ok})


if rw and rn:
    target("read pass-through req/s ≥ nginx at ≤ p99",
           f"{rw['rps']:.0f} vs {rn['rps']:.0f} req/s; p99 {rw['p99_ms']:.3f} vs {rn['p99_ms']:.3f} ms",
           "whizard/nginx ≥ 1.0, p99 ≤ nginx",
           rw["rps"] >= rn["rps"] and rw["p99_ms"] <= rn["p99_ms"])
if "moderate_added_p99_ms" in ratios:
    target("added p99 vs direct at moderate load", f"{ratios['moderate_added_p99_ms']:.3f} ms", "< 0.5 ms",
           ratios["moderate_added_p99_ms"] < 0.5)
if pq:
    target("PromQL rewrite median (dashboard set)", f"{pq['median_ns'] / 1e3:.1f} µs", "< 20 µs", pq["median_ns"] < 20e3)
if micro.get("auth_basic_check_cached_ns") is not None:
    v = micro["auth_basic_check_cached_ns"]
    target("cached Basic Auth check", f"{v / 1e3:.2f} µs", "< 2 µs", v < 2e3)
if micro.get("auth_jwt_check_cached_ns") is not None:
    v = micro["auth_jwt_check_cached_ns"]
    target("cached JWT (bearer) check", f"{v / 1e3:.2f} µs", "< 2 µs", v < 2e3)
if gw_mem.get("conns_10000"):
    v = gw_mem["conns_10000"] / 1024
    target("RSS with 10,000 idle connections", f"{v:.1f} MiB", "< 64 MiB", v < 64)
for shape, row in write.items():
    target(f"v1 injection vs snappy round trip ({shape})", f"{row['c_over_a'] * 100:.0f}%", "≥ 50%", row["c_over_a"] >= 0.5)
    target(f"v2 injection vs snappy round trip ({shape})", f"{row['d_over_a'] * 100:.0f}%", "≥ 50%", row["d_over_a"] >= 0.5)

# ---------------------------------------------------------------- production shape (headline)
PROD_MODES = [
    ("http1", "plain HTTP/1.1", "wrk -t1 -c{c}"),
    ("https1", "HTTPS, HTTP/1.1", "wrk -t1 -c{c} over TLS"),
    ("h2", "HTTPS, HTTP/2", "h2load -t1 -c{c} -m{m}"),
    ("h1pipe", "plain HTTP/1.1, pipelined", "h2load --h1 -t1 -c{c} -m{m}"),
]
PROD_TARGETS = [
    ("direct", "direct to the stub (reference)"),
    ("whizard", "whizard (Basic Auth, argon2id hash, cached)"),
    ("whizard-pinned", "whizard, `server.pin_workers: true` (not the headline)"),
    ("haproxy", f"haproxy ({prod_meta.get('haproxy_hash', 'crypt(3) hash')}, per request)"),
    ("haproxy-plain", "haproxy, `insecure-password` (no hash)"),
    ("nginx", "nginx ({SHA} htpasswd)"),
]
COMPETITORS = ("haproxy", "nginx")  # best-of for the headline ratios (both check a hash)
# metric → (key in a phase, True when higher is better)
PROD_METRICS = {
    "rps": ("rps", True), "p50": ("p50_ms", False), "p99": ("p99_ms", False), "p99_9": ("p99_9_ms", False),
    "cpu": ("cpu_us_per_req", False), "user_cpu": ("user_us_per_req", False), "kernel_cpu": ("kernel_us_per_req", False),
}
production = {"meta": prod_meta, "modes": {}, "remote_write_https": {}, "query_h2": {}, "moderate_https": {}}
for mode, _, _ in PROD_MODES:
    rows = {t: P(f"prod-{mode}-{t}") for t, _ in PROD_TARGETS}
    rows = {t: ph for t, ph in rows.items() if ph}
    for ph in rows.values():
        ph["kernel_us_per_req"] = ph["cpu_us_per_req"] - ph["user_us_per_req"]
    if not rows:
        continue
    pw = rows.get("whizard")
    vs_best = {}
    prod_round_ratios = []
    if pw:
        for metric, (key, higher) in PROD_METRICS.items():
            cands = [(rows[c][key], c) for c in COMPETITORS if c in rows and rows[c][key]]
            if not cands:
                continue
            best, who = (max if higher else min)(cands)
            vs_best[metric] = {"ratio": pw[key] / best, "best": who, "whizard": pw[key], "best_value": best}
        if "haproxy-plain" in rows:
            hp = rows["haproxy-plain"]
            vs_best["rps_over_haproxy_plain"] = {"ratio": pw["rps"] / hp["rps"], "best": "haproxy-plain"}
            vs_best["cpu_over_haproxy_plain"] = {"ratio": ratio(pw["cpu_us_per_req"], hp["cpu_us_per_req"]), "best": "haproxy-plain"}
        n = len(pw["rounds"])
        if n > 1 and all(len(rows[c]["rounds"]) == n for c in COMPETITORS if c in rows):
            for i in range(n):
                best = max(rows[c]["rounds"][i]["rps"] for c in COMPETITORS if c in rows)
                prod_round_ratios.append(pw["rounds"][i]["rps"] / best)
    production["modes"][mode] = {
        "rows": {t: {k: v for k, v in ph.items() if k != "curve"} for t, ph in rows.items()},
        "whizard_over_best": vs_best,
        "rps_whizard_over_best_per_round": prod_round_ratios,
    }
MODERATE_TARGETS = [
    ("direct", "direct to the stub (plain HTTP/1.1)"),
    ("whizard", "whizard (HTTPS)"),
    ("haproxy-plain", "haproxy, `insecure-password` (HTTPS)"),
    ("nginx", "nginx (HTTPS)"),
]
moderate = {t: P(f"prod-moderate-{t}") for t, _ in MODERATE_TARGETS}
moderate = {t: ph for t, ph in moderate.items() if ph}
if "direct" in moderate:
    md0 = moderate["direct"]
    production["moderate_https"] = {
        t: {"p50_ms": ph["p50_ms"], "p99_ms": ph["p99_ms"], "p99_9_ms": ph["p99_9_ms"], "rps": ph["rps"],
            "cpu_us_per_req": ph["cpu_us_per_req"], "errors": ph["errors"],
            "added_p50_ms": ph["p50_ms"] - md0["p50_ms"], "added_p99_ms": ph["p99_ms"] - md0["p99_ms"]}
        for t, ph in moderate.items()
    }
for key in sorted(phases):
    if not key.startswith("prod-write-"):
        continue
    shape, case = key[len("prod-write-"):].split("-", 1)
    series, per = (int(x) for x in shape.split("x"))
    ph = phases[key]
    production["remote_write_https"].setdefault(shape, {})[case] = {
        "rps": ph["rps"], "samples_per_s": ph["rps"] * series * per, "p50_ms": ph["p50_ms"], "p99_ms": ph["p99_ms"],
        "cpu_us_per_req": ph["cpu_us_per_req"], "errors": ph["errors"],
    }
for case in ("direct", "whizard"):
    ph = P(f"prod-query-{case}")
    if ph:
        production["query_h2"][case] = {k: v for k, v in ph.items() if k != "curve"}
pq2 = production["query_h2"]
if "direct" in pq2 and "whizard" in pq2:
    pq2["ratios"] = {
        "rps_whizard_over_direct": pq2["whizard"]["rps"] / pq2["direct"]["rps"],
        "added_p50_ms": pq2["whizard"]["p50_ms"] - pq2["direct"]["p50_ms"],
        "added_p99_ms": pq2["whizard"]["p99_ms"] - pq2["direct"]["p99_ms"],
    }

result = {
    "meta": meta,
    "production": production,
    "read": {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in phases.items()},
    "ratios": ratios,
    "read_rounds": per_round,
    "remote_write": write,
    "micro": micro,
    "memory": memory,
    "targets": targets,
}
(out / "latest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

# ---------------------------------------------------------------- markdown
L = []
L.append(f"# whizard benchmark — {meta.get('date', '')}")
L.append("")
if meta.get("production_only"):
    L.append(f"Machine: {meta.get('host_cpus')} CPUs ({meta.get('cpu_model')}); production-shape phase only "
             f"(`--production-only`); git {meta.get('git')}; load average at end {meta.get('loadavg_end')}.")
else:
    L.append(f"Machine: {meta.get('host_cpus')} CPUs ({meta.get('cpu_model')}); pinned phases: gateway threads "
             f"{meta.get('gateway_threads')}, nginx 1 worker, vmauth GOMAXPROCS=1; pinned: {meta.get('pinned')} (proxy on "
             f"CPU 0, wrk + upstream on CPU 1); wrk {meta.get('wrk')}; git {meta.get('git')}; load average at end "
             f"{meta.get('loadavg_end')}.")
L.append("")
if production["modes"]:
    pm = prod_meta
    c, m = pm.get("connections", "?"), pm.get("h2_streams", "?")
    L.append("## P. Production shape (headline)")
    L.append("")
    L.append(f"Every proxy with one thread/worker per core ({pm.get('threads')} threads for whizard and haproxy, "
             f"{pm.get('nginx_workers')} nginx workers), unpinned, sharing the machine with the load generator and the "
             f"stub ({pm.get('threads')} threads). The same job everywhere: Basic Auth, `THANOS-TENANT: team-a` set, "
             "`Authorization` not passed on, keep-alive to the stub. One ECDSA P-256 certificate; TLS negotiated with "
             f"an OpenSSL client: {', '.join(f'{k} {v}' for k, v in pm.get('tls_openssl_client', {}).items())}. "
             f"haproxy {pm.get('haproxy')}, nginx {pm.get('nginx')}, h2load {pm.get('h2load')}, wrk {pm.get('wrk')}, "
             f"OpenSSL {pm.get('openssl')}. {meta.get('rounds')} interleaved round(s) of {meta.get('round_s')} s per "
             "target and mode; rows pool the rounds. Latency in ms; CPU = µs of the process under test per request "
             "(all its threads, and nginx's master and workers), split into user space and kernel.")
    L.append("")
    L.append("| mode | target | req/s | p50 | p99 | p99.9 | CPU µs/req | user | kernel | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, title, tool in PROD_MODES:
        md_rows = production["modes"].get(mode, {}).get("rows", {})
        for t, label in PROD_TARGETS:
            ph = md_rows.get(t)
            if not ph:
                continue
            L.append(f"| {title} ({tool.format(c=c, m=m)}) | {label} | {ph['rps']:.0f} | {ph['p50_ms']:.3f} | "
                     f"{ph['p99_ms']:.3f} | {ph['p99_9_ms']:.3f} | {ph['cpu_us_per_req']:.1f} | "
                     f"{ph['user_us_per_req']:.1f} | {ph['kernel_us_per_req']:.1f} | {ph['errors']} |")
    L.append("")
    L.append("whizard / best of (haproxy with its hash, nginx), each metric against the better of the two for it "
             "(named): req/s above 1 and the others below 1 favour whizard.")
    L.append("")
    L.append("| mode | req/s | p50 | p99 | p99.9 | CPU/req | user CPU/req | kernel CPU/req | req/s per round | "
             "req/s vs haproxy `insecure-password` | CPU/req vs it |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, title, _ in PROD_MODES:
        vb = production["modes"].get(mode, {}).get("whizard_over_best", {})
        if not vb:
            continue
        cell = lambda k: f"{vb[k]['ratio']:.2f} ({vb[k]['best']})" if k in vb and vb[k]["ratio"] is not None else "—"
        plain = lambda k: f"{vb[k]['ratio']:.2f}" if k in vb and vb[k]["ratio"] is not None else "—"
        rounds_txt = ", ".join(f"{x:.2f}" for x in production["modes"][mode]["rps_whizard_over_best_per_round"]) or "—"
        L.append(f"| {title} | {cell('rps')} | {cell('p50')} | {cell('p99')} | {cell('p99_9')} | {cell('cpu')} | "
                 f"{cell('user_cpu')} | {cell('kernel_cpu')} | {rounds_txt} | {plain('rps_over_haproxy_plain')} | "
                 f"{plain('cpu_over_haproxy_plain')} |")
    L.append("")
if production["moderate_https"]:
    L.append("Moderate load over HTTPS (wrk -t1 -c8, one request every 4 ms on each connection): what each proxy adds "
             "to the latency of a direct request (plain HTTP/1.1 to the stub, which speaks no TLS), TLS included. "
             "Goal for whizard: added p99 ≤ 0.5 ms.")
    L.append("")
    L.append("| target | req/s | p50 | p99 | p99.9 | added p50 | added p99 | CPU µs/req | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t, label in MODERATE_TARGETS:
        e = production["moderate_https"].get(t)
        if e:
            L.append(f"| {label} | {e['rps']:.0f} | {e['p50_ms']:.3f} | {e['p99_ms']:.3f} | {e['p99_9_ms']:.3f} | "
                     f"{e['added_p50_ms']:+.3f} | {e['added_p99_ms']:+.3f} | {e['cpu_us_per_req']:.1f} | {e['errors']} |")
    L.append("")
if production["remote_write_https"]:
    L.append(f"Remote write over HTTPS (HTTP/1.1, {prod_meta.get('write')}; the same snappy bodies as section 3): "
             "through whizard (v1 and v2, tenant label and external labels injected) vs direct to the stub over plain "
             "HTTP (the stub speaks no TLS).")
    L.append("")
    L.append("| payload | path | req/s | samples/s | p50 ms | p99 ms | CPU µs/req | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for shape, cases in production["remote_write_https"].items():
        for case, e in cases.items():
            L.append(f"| {shape} | {case} | {e['rps']:.0f} | {e['samples_per_s'] / 1e6:.2f} M | {e['p50_ms']:.2f} | "
                     f"{e['p99_ms']:.2f} | {e['cpu_us_per_req']:.0f} | {e['errors']} |")
    L.append("")
if pq2.get("whizard"):
    L.append(f"`/api/v1/query` over HTTP/2 through whizard (h2load -t1 {prod_meta.get('query_h2')}, HTTPS; the query "
             "rewritten to carry the tenant label; whizard → Prometheus over plain HTTP/1.1), and the already-labelled "
             f"query sent directly to the same Prometheus (h2load -t1 {prod_meta.get('query_direct')}: as many requests "
             "in flight, plain HTTP/1.1: Prometheus speaks HTTP/2 only over TLS).")
    L.append("")
    L.append("| path | req/s | p50 | p99 | p99.9 | CPU µs/req | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for case, label in (("direct", "direct to Prometheus (plain HTTP/1.1)"), ("whizard", "through whizard (HTTPS, HTTP/2)")):
        ph = pq2.get(case)
        if ph:
            L.append(f"| {label} | {ph['rps']:.0f} | {ph['p50_ms']:.3f} | {ph['p99_ms']:.3f} | {ph['p99_9_ms']:.3f} | "
                     f"{ph['cpu_us_per_req']:.1f} | {ph['errors']} |")
    if "ratios" in pq2:
        q = pq2["ratios"]
        L.append("")
        L.append(f"req/s whizard / direct {q['rps_whizard_over_direct']:.3f}; added p50 {q['added_p50_ms']:.3f} ms, "
                 f"added p99 {q['added_p99_ms']:.3f} ms.")
    L.append("")
# The pinned sections; each is dropped again when it has nothing to show (--production-only).
section = len(L)
L.append("## 1–2. Reads, pinned to one core (latency in ms; CPU = µs of the process under test per request, user = its user-space part)")
L.append("")
L.append("| phase | conns | req/s | p50 | p99 | p99.9 | CPU µs/req | user µs/req | errors |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
labels = [
    ("read-direct", "pass-through: direct to stub"),
    ("read-whizard", "pass-through: whizard (Basic Auth, tenant header)"),
    ("read-whizard-profiled", "pass-through: whizard under perf"),
    ("read-nginx", "pass-through: nginx ({SHA} htpasswd)"),
    ("read-nginx-apr1", "pass-through: nginx ($apr1$ htpasswd, default)"),
    ("read-vmauth", "pass-through: vmauth (plain-text password)"),
    ("read-relay", "pass-through: floor — 1:1 tokio relay, same job, no HTTP machinery"),
    ("moderate-direct", "moderate (8 conns × 1 req per 4 ms): direct"),
    ("moderate-whizard", "moderate: whizard"),
    ("moderate-nginx", "moderate: nginx ({SHA})"),
    ("moderate-vmauth", "moderate: vmauth"),
    ("moderate-relay", "moderate: floor (1:1 tokio relay)"),
    ("query-direct", "/api/v1/query: direct to Prometheus"),
    ("query-whizard", "/api/v1/query: whizard (enforced)"),
]
for key, label in labels:
    ph = P(key)
    if not ph:
        continue
    L.append(f"| {label} | {ph['connections']} | {ph['rps']:.0f} | {ph['p50_ms']:.3f} | {ph['p99_ms']:.3f} | "
             f"{ph['p99_9_ms']:.3f} | {ph['cpu_us_per_req']:.1f} | {ph['user_us_per_req']:.1f} | {ph['errors']} |")
L.append("")
L.append("| ratio | value |")
L.append("|---|---:|")
names = {
    "read_rps_whizard_over_nginx": "req/s whizard / nginx",
    "read_p99_whizard_over_nginx": "p99 whizard / nginx (saturated)",
    "read_cpu_whizard_over_nginx": "CPU per request whizard / nginx",
    "read_user_cpu_whizard_over_nginx": "user-space CPU per request whizard / nginx",
    "read_kernel_cpu_whizard_over_nginx": "kernel CPU per request whizard / nginx",
    "read_rps_whizard_over_relay": "req/s whizard / floor (1:1 relay)",
    "read_rps_whizard_over_vmauth": "req/s whizard / vmauth",
    "read_p99_whizard_over_vmauth": "p99 whizard / vmauth (saturated)",
    "read_cpu_whizard_over_vmauth": "CPU per request whizard / vmauth",
    "read_rps_whizard_over_direct": "req/s whizard / direct",
    "moderate_added_p50_ms": "added p50 vs direct, moderate load (ms)",
    "moderate_added_p99_ms": "added p99 vs direct, moderate load (ms)",
    "moderate_p99_whizard_over_nginx": "p99 whizard / nginx (moderate)",
    "moderate_added_p99_ms_vmauth": "vmauth's added p99 vs direct, moderate load (ms)",
    "moderate_p99_whizard_over_vmauth": "p99 whizard / vmauth (moderate)",
    "query_rps_whizard_over_direct": "query req/s whizard / direct",
    "query_added_p50_ms": "query added p50 (ms)",
    "query_added_p99_ms": "query added p99 (ms)",
}
for k, v in ratios.items():
    if v is not None:
        L.append(f"| {names.get(k, k)} | {v:.3f} |")
L.append("")
if per_round:
    L.append(f"Saturated pass-through per round ({meta.get('rounds')} rounds of {meta.get('round_s')} s; each round runs "
             "direct, whizard, nginx, nginx $apr1$, vmauth in turn; the rows above pool the rounds):")
    L.append("")
    L.append("| round | whizard req/s | nginx req/s | req/s whizard / nginx | p99 whizard / nginx | CPU per request whizard / nginx "
             "| vmauth req/s | req/s whizard / vmauth | p99 whizard / vmauth |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    vm_rounds = rv["rounds"] if rv and len(rv["rounds"]) == len(rw["rounds"]) else [None] * len(rw["rounds"])
    for pr, a, b, v in zip(per_round, rw["rounds"], rn["rounds"], vm_rounds):
        L.append(f"| {pr['round']} | {a['rps']:.0f} | {b['rps']:.0f} | {pr['rps_whizard_over_nginx']:.3f} | "
                 f"{pr['p99_whizard_over_nginx']:.3f} | {pr['cpu_whizard_over_nginx']:.3f} | "
                 f"{f(v and v['rps'], '{:.0f}')} | {f(pr['rps_whizard_over_vmauth'])} | {f(pr['p99_whizard_over_vmauth'])} |")
    L.append("")
if not any(P(k) for k, _ in labels):
    del L[section:]
section = len(L)
L.append("## 3. Remote write")
L.append("")
L.append("Codec, one core, per request (decompress → validate/splice → compress; from `whizard-benchtool micro`):")
L.append("")
L.append("| payload | case | µs/request | requests/s | samples/s | vs snappy round trip |")
L.append("|---|---|---:|---:|---:|---:|")
for shape, row in write.items():
    for case, c in row["codec"].items():
        L.append(f"| {shape} | {case} | {c['ns_per_request'] / 1e3:.0f} | {c['requests_per_s']:.0f} | "
                 f"{c['samples_per_s'] / 1e6:.2f} M | {c['vs_snappy'] * 100:.0f}% |")
L.append("")
L.append("End to end over HTTP (wrk POST, 8 connections; whizard → stub):")
L.append("")
L.append("| payload | path | req/s | samples/s | p99 ms | CPU µs/req | errors |")
L.append("|---|---|---:|---:|---:|---:|---:|")
for shape, row in write.items():
    for case, e in row["e2e"].items():
        L.append(f"| {shape} | {case} | {e['rps']:.0f} | {e['samples_per_s'] / 1e6:.2f} M | {e['p99_ms']:.2f} | "
                 f"{e['cpu_us_per_req']:.0f} | {e['errors']} |")
L.append("")
if not write:
    del L[section:]
section = len(L)
L.append("## 4. Microbenchmarks (one core)")
L.append("")
L.append("| benchmark | value |")
L.append("|---|---:|")
if micro:
    L.append(f"| Basic Auth check, cached | {micro['auth_basic_check_cached_ns'] / 1e3:.2f} µs |")
    L.append(f"| Basic Auth from header (base64 + check), cached | {micro['auth_basic_header_cached_ns'] / 1e3:.2f} µs |")
    # Results from before the JWT benchmark existed have these keys null or absent.
    jwt_rows = [
        ("auth_jwt_check_cached_ns", "JWT check (bearer), cached", "{:.2f} µs"),
        ("auth_jwt_header_cached_ns", "JWT from header (Bearer + check), cached", "{:.2f} µs"),
        ("auth_jwt_check_uncached_ns", "JWT check, uncached signature (RS256)", "{:.1f} µs"),
        ("auth_jwt_check_uncached_es256_ns", "JWT check, uncached signature (ES256)", "{:.1f} µs"),
    ]
    for key, label, fmt in jwt_rows:
        v = micro.get(key)
        L.append(f"| {label} | {'not measured' if v is None else fmt.format(v / 1e3)} |")
    L.append(f"| PromQL rewrite, {pq['queries']} dashboard queries: median | {pq['median_ns'] / 1e3:.1f} µs |")
    L.append(f"| PromQL rewrite: p90 / max / mean | {pq['p90_ns'] / 1e3:.1f} / {pq['max_ns'] / 1e3:.1f} / {pq['mean_ns'] / 1e3:.1f} µs |")
    L.append(f"| PromQL rewrite, two tenants (regex matcher): mean | {pq['two_tenants_mean_ns'] / 1e3:.1f} µs |")
    L.append(f"| match[] injection, per selector | {micro['match_injection_per_selector_ns'] / 1e3:.2f} µs |")
    L.append(f"| match[] injection, absent (default selector) | {micro['match_injection_absent_ns'] / 1e3:.2f} µs |")
L.append("")
if not micro:
    del L[section:]
section = len(L)
L.append("## 5. Memory (RSS)")
L.append("")
L.append("| state | whizard | nginx (master + worker) | vmauth |")
L.append("|---|---:|---:|---:|")
op = memory.get("opened", {})
mem_cell = lambda m, k: f"{f(mib(m.get(k)), '{:.1f}')} MiB"
L.append(f"| fresh start | {mem_cell(gw_mem, 'fresh')} | — | — |")
L.append(f"| idle after the load phases | {mem_cell(gw_mem, 'idle_after_load')} | {mem_cell(ng_mem, 'idle_after_load')} | {mem_cell(vm_mem, 'idle_after_load')} |")
for n, shown in ((1000, "1,000"), (10000, "10,000")):
    opened = "/".join(str(op.get(f"{who}_{n}", "—")) for who in ("gateway", "nginx", "vmauth"))
    L.append(f"| {shown} idle keep-alive conns (opened {opened}) | {mem_cell(gw_mem, f'conns_{n}')} | "
             f"{mem_cell(ng_mem, f'conns_{n}')} | {mem_cell(vm_mem, f'conns_{n}')} |")
L.append("")
if not memory:
    del L[section:]
section = len(L)
L.append("## Targets (issues 4 and 8)")
L.append("")
L.append("| target | reached | goal | met |")
L.append("|---|---|---|---|")
for t in targets:
    L.append(f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
if not targets:
    del L[section:]
md = "\n".join(L) + "\n"
(out / "latest.md").write_text(md)
print(md)

# ---------------------------------------------------------------- chart
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        ("Read pass-through, saturated (64 conns)",
         ["read-direct", "read-whizard", "read-nginx", "read-nginx-apr1", "read-vmauth", "read-relay"]),
        ("Read pass-through, moderate (8 conns, 4 ms pacing)",
         ["moderate-direct", "moderate-whizard", "moderate-nginx", "moderate-vmauth", "moderate-relay"]),
        ("/api/v1/query (16 conns)", ["query-direct", "query-whizard"]),
    ]
    if production["modes"]:
        groups = [(f"Production shape: {title} ({prod_meta.get('connections')} conns)",
                   [f"prod-{mode}-{t}" for t, _ in PROD_TARGETS]) for mode, title, _ in PROD_MODES] + groups
    groups = [(title, keys) for title, keys in groups if any(P(k) for k in keys)]
    nrows = (len(groups) + 2) // 3
    fig, axes = plt.subplots(nrows, 3, figsize=(17, 5.2 * nrows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    for ax, (title, keys) in zip(axes, groups):
        for k in keys:
            ph = P(k)
            if not ph:
                continue
            xs = [1 / (1 - p / 100) for p, _ in ph["curve"]]
            ys = [v / 1e3 for _, v in ph["curve"]]
            # Production panels: one colour per target across the modes.
            who = next((t for t, _ in sorted(PROD_TARGETS, key=lambda x: -len(x[0])) if k.startswith("prod-") and k.endswith("-" + t)), None)
            color = {"direct": "C0", "whizard": "C1", "haproxy": "C2", "haproxy-plain": "C3", "nginx": "C4", "whizard-pinned": "C5"}.get(who)
            ax.plot(xs, ys, label=f"{k} ({ph['rps']:.0f} req/s)", color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [1 / (1 - q) for q in (0.5, 0.9, 0.99, 0.999, 0.9999)]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"whizard latency distributions — {meta.get('date', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "latest.png", dpi=110)
except Exception as e:  # noqa: BLE001 — the chart is optional
    print(f"(no chart: {e})", file=sys.stderr)
