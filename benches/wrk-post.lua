-- wrk script for benches/load.sh: POSTs one Alertmanager webhook body, read from $BODY_FILE,
-- on every request, as Alertmanager does (Content-Type: application/json).
--
-- The body comes from a file (not inlined here) so the load test and the parse benchmark use the
-- same real fixture, tests/fixtures/am-0.25-firing-grouped-3.json by default.
--
-- Environment (load.sh sets all of it):
--   BODY_FILE     the JSON body to post (required).
--   FRESH=1       every alert of every request is one the daemon has never seen (UNIQUE=1 is the
--                 older name and means the same).
--   FRESH_ID      8 hex digits, distinct for every wrk process (FRESH only): the start of every
--                 fingerprint. load.sh makes it from a random per-run prefix (6 hex) and the wrk
--                 process's number in the run (2 hex), so neither a warm-up and its measurement,
--                 nor two wrk processes at once, nor a rerun against a kept database collide.
--   RUN_EPOCH     Unix seconds (FRESH only): startsAt values count back from this instant.

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

local fresh = os.getenv("FRESH") == "1" or os.getenv("UNIQUE") == "1"

-- FRESH: each alert's `fingerprint` becomes FRESH_ID (8 hex) .. wrk thread (1 hex) .. a
-- per-thread alert counter (7 hex): 16 hex digits like Alertmanager's, distinct per alert, per
-- request, per thread, per wrk process and per run. Its `startsAt` is RUN_EPOCH minus
-- this thread's request count in milliseconds (never in the future; the alerts of one request
-- share it, their fingerprints already differ).
-- Every request then pays for a durable store write instead of the duplicate check.
if fresh then
  local fresh_id = os.getenv("FRESH_ID") or ""
  if not fresh_id:match("^%x%x%x%x%x%x%x%x$") then
    error("FRESH=1 needs FRESH_ID, 8 hex digits distinct per wrk process (load.sh sets it), got '" .. fresh_id .. "'")
  end
  local epoch = tonumber(os.getenv("RUN_EPOCH") or "")
  if epoch == nil or epoch < 1e9 then
    error("FRESH=1 needs RUN_EPOCH, Unix seconds, got '" .. tostring(os.getenv("RUN_EPOCH")) .. "'")
  end
  if not body:find('"fingerprint":"[^"]*"') or not body:find('"startsAt":"[^"]*"') then
    error(path .. ": FRESH=1 needs every alert to carry \"fingerprint\" and \"startsAt\" (compact JSON, no spaces)")
  end

  local threads = 0
  function setup(thread)
    if threads > 15 then
      error("FRESH=1 supports at most 16 wrk threads per process")
    end
    thread:set("tid", threads)
    threads = threads + 1
  end

  local counter = 0
  local LIMIT = 16 ^ 7
  local function next_fingerprint()
    counter = counter + 1
    if counter >= LIMIT then
      error("more than 16^7 alerts from one wrk thread: fingerprints would repeat")
    end
    return string.format("%s%x%07x", fresh_id, tid or 0, counter)
  end
  local requests = 0
  function request()
    requests = requests + 1
    local ms = epoch * 1000 - requests
    local ts = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
    local b = body:gsub('"startsAt":"[^"]*"', '"startsAt":"' .. ts .. '"')
    b = b:gsub('"fingerprint":"[^"]*"', function()
      return '"fingerprint":"' .. next_fingerprint() .. '"'
    end)
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
