-- bench/wrk/request.lua (what to send, BENCH_JSON) plus what bench/tails.ts reads:
--   TIMELINE_OUT  file that gets "<unix ms> <responses completed in that ms>" lines
--   PCT_OUT       file that gets one JSON object of latency percentiles (us), p90 to p99.99
-- The clock is CLOCK_REALTIME through LuaJIT's ffi, so the gateway's GC times (bench/lib/
-- gc-timeline.cjs, performance.timeOrigin + startTime) line up with it. Defining response() makes
-- wrk parse every reply's headers for Lua, which costs the client core some CPU: compare the
-- servers with each other under this script, not with the figures of request.lua.
dofile(os.getenv("BENCH_WRK_DIR") .. "/request.lua")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local out = os.getenv("TIMELINE_OUT")
local counts, flushed = {}, 0

local function flush(now)
  local f = assert(io.open(out, "a"))
  for k, v in pairs(counts) do f:write(k, " ", v, "\n") end
  f:close()
  counts, flushed = {}, now
end

response = function()
  ffi.C.clock_gettime(0, ts)
  local ms = tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1e6)
  counts[ms] = (counts[ms] or 0) + 1
  -- Written every 100 ms from the thread's own state: done() runs in another Lua state.
  if ms - flushed >= 100 then flush(ms) end
end

local printResult = done
done = function(summary, latency, requests)
  printResult(summary, latency, requests)
  local parts = {}
  for _, p in ipairs({ 90, 95, 97, 98, 99, 99.5, 99.9, 99.99 }) do
    parts[#parts + 1] = string.format('"%s":%d', p, latency:percentile(p))
  end
  local f = assert(io.open(os.getenv("PCT_OUT"), "w"))
  f:write("{", table.concat(parts, ","), "}\n")
  f:close()
end
