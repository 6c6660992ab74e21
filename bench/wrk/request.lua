-- One wrk script for every scenario; the harness (bench/run.ts) says what to send through the
-- environment, so request bodies (a 100-command pipeline, a 64 KiB value) never sit on a command line:
--   BENCH_METHOD    GET, POST or PUT (default GET)
--   BENCH_BODIES    file with request bodies, one per line; several bodies are sent in turn
--   BENCH_HEADERS   file with "Name: value" lines
--   BENCH_DELAY_MS  pause before each request on a connection (rate control for the soak)
-- done() prints one line "BENCH_JSON {...}": requests, duration, errors and latency percentiles (us).

local method = os.getenv("BENCH_METHOD") or "GET"
local bodies = {}
local headers = {}

local function lines(path)
  local out = {}
  if path == nil or path == "" then return out end
  local f = assert(io.open(path, "rb"))
  for line in f:lines() do
    if line ~= "" then out[#out + 1] = line end
  end
  f:close()
  return out
end

for _, l in ipairs(lines(os.getenv("BENCH_HEADERS"))) do
  local k, v = l:match("^([^:]+):%s*(.*)$")
  if k then headers[k] = v end
end
bodies = lines(os.getenv("BENCH_BODIES"))
-- Replacing wrk.headers drops wrk's own Host header; HTTP/1.1 servers (Node's included) need it.
if headers["Host"] == nil then
  headers["Host"] = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host
end

wrk.method = method
wrk.headers = headers
if #bodies >= 1 then wrk.body = bodies[1] end

if #bodies > 1 then
  local reqs = {}
  for i, b in ipairs(bodies) do reqs[i] = wrk.format(method, nil, headers, b) end
  local n = 0
  request = function()
    n = n % #reqs + 1
    return reqs[n]
  end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  delay = function() return delay_ms end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"min":%d,"mean":%.2f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
