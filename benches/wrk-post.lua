-- wrk script for benches/load.sh: POSTs one Alertmanager webhook body, read from $BODY_FILE,
-- on every request, as Alertmanager does (Content-Type: application/json).
--
-- The body comes from a file (not inlined here) so the load test and the parse benchmark use the
-- same real fixture, tests/fixtures/am-0.25-firing-grouped-3.json by default.

local path = os.getenv("BODY_FILE")
if path == nil or path == "" then
  error("BODY_FILE must name the JSON body to post (e.g. tests/fixtures/am-0.25-firing-grouped-3.json)")
end
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

-- UNIQUE=1 rewrites every startsAt per request, so each request carries alerts the daemon has
-- not seen: every request then pays for a durable store write instead of the in-memory
-- duplicate check. Thread index and a per-thread counter make the instants distinct to the
-- millisecond, the precision dedup compares.
if os.getenv("UNIQUE") == "1" then
  local threads = 0
  function setup(thread)
    thread:set("tid", threads)
    threads = threads + 1
  end
  local counter = 0
  function request()
    counter = counter + 1
    local c = counter
    local ts = string.format("2026-%02d-%02dT%02d:%02d:%02d.%03dZ",
      1 + (tid or 0) % 12, 1 + math.floor(c / 86400000) % 28, math.floor(c / 3600000) % 24,
      math.floor(c / 60000) % 60, math.floor(c / 1000) % 60, c % 1000)
    local b = body:gsub('"startsAt":"[^"]*"', '"startsAt":"' .. ts .. '"')
    return wrk.format(nil, nil, nil, b)
  end
end

-- One machine-readable line after wrk's own report, so load.sh does not have to parse wrk's
-- unit-suffixed text ("1.23ms", "456.78us"). Latencies are in microseconds. `non2xx` is wrk's
-- errors.status, the same count wrk prints as "Non-2xx or 3xx responses"; socket errors are kept
-- apart because they mean the server stopped answering, not that it answered badly.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
