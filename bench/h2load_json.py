#!/usr/bin/env python3
"""bench/h2load_json.py H2LOAD_OUTPUT LOG_FILE — turns one h2load run (its printed summary and its
--log-file of per-request timings) into the summary bench/wrk/report.lua prints for wrk, so that
bench/run.sh and bench/report.py treat both tools alike. Prints one line "WRKJSON {...}".

h2load itself reports only min/max/mean/sd of the request time; the percentiles (p50 ... p99.99
and the 1..99 % curve of the chart) come from the per-request log: one row per finished stream,
"start µs since epoch <TAB> status (-1: failed) <TAB> µs until the end of the response".
Percentiles are nearest-rank, like wrk's. Extra keys: "protocol" (the ALPN result h2load
printed), "tls" (protocol and cipher) and "tool": "h2load"."""
import json
import math
import re
import sys

out = open(sys.argv[1], errors="replace").read()
times, non2xx_log = [], 0
with open(sys.argv[2]) as f:
    for line in f:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status = int(parts[1])
        if status < 0:
            continue
        if not 200 <= status < 300:
            non2xx_log += 1
        times.append(int(parts[2]))


def num(pattern, default=0.0):
    m = re.search(pattern, out)
    return float(m.group(1)) if m else default


rps = num(r"finished in [0-9.]+\w*, ([0-9.]+) req/s")
done = int(num(r"requests: \d+ total, \d+ started, (\d+) done"))
failed = int(num(r"(\d+) failed"))
errored = int(num(r"(\d+) errored"))
timeout = int(num(r"(\d+) timeout"))
codes = {k: int(num(rf"(\d+) {k}")) for k in ("2xx", "3xx", "4xx", "5xx")}
traffic = int(num(r"traffic: [0-9.]+\w* \((\d+)\) total"))
proto = re.search(r"Application protocol: (\S+)", out)
tls = re.search(r"TLS Protocol: (\S+)", out), re.search(r"Cipher: (\S+)", out)

if not done or not rps or not times:
    sys.exit(f"h2load gave no result: {out.strip().splitlines()[-3:]}")

times.sort()
n = len(times)


def pct(p):
    return times[max(0, min(n - 1, math.ceil(p / 100 * n) - 1))]


mean = sum(times) / n
stdev = math.sqrt(sum((t - mean) ** 2 for t in times) / n)
summary = {
    "requests": done,
    # h2load's req/s is done / the measured time; its printed time has two decimals only.
    "duration_us": int(done / rps * 1e6),
    "bytes": traffic,
    "errors": {"connect": 0, "read": max(failed - timeout, 0), "write": 0,
               "status": codes["3xx"] + codes["4xx"] + codes["5xx"], "timeout": timeout},
    "latency_us": {"min": times[0], "max": times[-1], "mean": round(mean, 1), "stdev": round(stdev, 1),
                   "p": {str(p): pct(p) for p in (50, 75, 90, 99, 99.9, 99.99)}},
    "curve": [[p, pct(p)] for p in range(1, 100)] + [[p, pct(p)] for p in (99.5, 99.9, 99.95, 99.99)],
    "tool": "h2load",
    "protocol": proto.group(1) if proto else "h2c",
    "tls": " ".join(m.group(1) for m in tls if m),
    "errored": errored,
}
print("WRKJSON " + json.dumps(summary, separators=(",", ":")))
