-- bench/wrk/request.lua (same environment, same BENCH_JSON report), but every request goes to an
-- instance picked uniformly at random from BENCH_INSTANCES of them, named like the generated
-- configs of bench/cost.ts and bench/sizing.ts: <BENCH_INSTANCE_PREFIX>00000, ...00001, ... (five
-- digits), at /v1/instances/<name>. The URL given to wrk names only the host and port.
--   BENCH_INSTANCES        how many instances (default 1)
--   BENCH_INSTANCE_PREFIX  their names' prefix (default "inst-")
-- Method, headers and the (one) body: as request.lua takes them (BENCH_METHOD, BENCH_HEADERS,
-- BENCH_BODIES).

-- request.lua sits next to this file: load it for the method, headers, body and done().
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "request.lua")

local n = tonumber(os.getenv("BENCH_INSTANCES") or "") or 1
local prefix = os.getenv("BENCH_INSTANCE_PREFIX") or "inst-"

-- One formatted request per instance, built once (10,000 of ~200 bytes; a 1 MiB body is not
-- spread over instances, so memory stays small).
local reqs = {}
for i = 0, n - 1 do
  reqs[i + 1] = wrk.format(wrk.method, string.format("/v1/instances/%s%05d", prefix, i), wrk.headers, wrk.body)
end

-- Seeded per thread (wrk runs one Lua state per thread) so threads do not follow one sequence.
init = function()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

request = function()
  return reqs[math.random(n)]
end
