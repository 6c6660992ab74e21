-- bench/wrk/request.lua (same environment, same BENCH_JSON report), but the pause before each
-- request is drawn uniformly from 0 to twice BENCH_DELAY_MS (mean BENCH_DELAY_MS), where
-- request.lua waits exactly that long: connections that open together then do not stay in step,
-- and 10,000 of them paced at one request every 2 s arrive as a steady 5,000 req/s instead of
-- bursts of 10,000 requests at once. Used by bench/cost.ts ("paced" connections).

-- request.lua sits next to this file: load it for the method, headers, body and done().
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "request.lua")

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")

-- Seeded per thread (wrk runs one Lua state per thread) so threads do not follow one sequence.
init = function()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

if delay_ms and delay_ms > 0 then
  delay = function() return math.random(0, 2 * delay_ms) end
end
