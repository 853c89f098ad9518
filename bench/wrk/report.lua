-- wrk script of bench/run.sh: optional POST body and pacing, and a machine-readable summary.
--   WRK_BODY=FILE       send FILE as the body of a POST (remote-write phases)
--   WRK_DELAY_MS=N      wait N ms between requests on each connection (moderate-load phases)
-- done() prints one line "WRKJSON {...}" with requests, duration, errors and latency
-- percentiles in microseconds (p50 ... p99.99 and a 1..99 percentile curve for the chart).
local body_file = os.getenv("WRK_BODY")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
end

local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

done = function(summary, latency, requests)
  local points = {}
  local curve = {}
  for _, p in ipairs({50, 75, 90, 99, 99.9, 99.99}) do
    points[#points + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  for p = 1, 99 do
    curve[#curve + 1] = string.format('[%d,%d]', p, latency:percentile(p))
  end
  for _, p in ipairs({99.5, 99.9, 99.95, 99.99}) do
    curve[#curve + 1] = string.format('[%s,%d]', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"p":{%s}},"curve":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    table.concat(points, ","), table.concat(curve, ",")))
end
