-- load.lua -- the wrk script of the benchmark (tests/bench/run.sh).
--
-- Environment:
--   BENCH_SYS    ours | etcd | ceiling    which HTTP API the requests speak
--   BENCH_OP     put | get | fill | route fill: write every key once, then stop;
--                                        route: BENCH_METHOD BENCH_PATH with
--                                        BENCH_BODY (tests/bench/ab.sh)
--   BENCH_KEYS   key space (10000)        keys are bench-00000 .. bench-09999
--   BENCH_VALUE  value bytes (100)
--
-- put/get pick a uniformly random key per request.  Every request of the key
-- space is built once per thread in init(), so the Lua cost per request is a
-- table lookup, the same for every system.  done() prints one line that
-- run.sh parses:
--   BENCH requests=N duration_s=S rps=R p50_ms=A p99_ms=B max_ms=C errors=E non2xx=F
-- (latencies from wrk's histogram, in milliseconds; errors = connect + read +
-- write + timeout errors, non2xx = responses with a status >= 400).

local sys = os.getenv("BENCH_SYS") or "ours"
local op = os.getenv("BENCH_OP") or "put"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local vbytes = tonumber(os.getenv("BENCH_VALUE") or "100")

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local fill_next, fill_step, fill_left

local function key(i)
  return string.format("bench-%05d", i)
end

local function build(i, value)
  local k = key(i)
  if sys == "etcd" then
    if op == "get" then
      return wrk.format("GET", "/v2/keys/" .. k)
    end
    return wrk.format("PUT", "/v2/keys/" .. k,
      { ["Content-Type"] = "application/x-www-form-urlencoded" }, "value=" .. value)
  end
  -- ours and the ceiling share the path (the ceiling answers any path)
  if op == "get" then
    return wrk.format("GET", "/v1/store/" .. k)
  end
  return wrk.format("PUT", "/v1/store/" .. k,
    { ["Content-Type"] = "application/octet-stream" }, value)
end

local route_req
if op == "route" then
  nkeys = 0 -- init() builds no key requests, only this one (wrk's Host is set by then)
end

function init(args)
  tid = tid or 0
  if op == "route" then
    local body = os.getenv("BENCH_BODY")
    local hdrs = body and { ["Content-Type"] = "application/json" } or nil
    route_req = wrk.format(os.getenv("BENCH_METHOD") or "GET",
      os.getenv("BENCH_PATH") or "/v1/status", hdrs, body)
  end
  math.randomseed(os.time() * 1000 + tid * 7919)
  -- a 100-byte value of [a-z0-9] (no form or URL escaping needed)
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  local parts = {}
  for i = 1, vbytes do
    local j = ((i * 7 + tid) % #alphabet) + 1
    parts[i] = alphabet:sub(j, j)
  end
  local value = table.concat(parts)
  for i = 0, nkeys - 1 do
    reqs[i + 1] = build(i, value)
  end
  if op == "fill" then
    local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
    fill_next = tid
    fill_step = nthreads
    fill_left = 0
    for i = tid, nkeys - 1, nthreads do
      fill_left = fill_left + 1
    end
  end
end


function request()
  if route_req then return route_req end
  if op == "fill" then
    local i = fill_next
    fill_next = fill_next + fill_step
    if fill_next >= nkeys then fill_next = tid end
    return reqs[i + 1]
  end
  return reqs[math.random(nkeys)]
end

if op == "fill" then
  function response(status, headers, body)
    fill_left = fill_left - 1
    if fill_left == 0 then
      io.write("FILLDONE\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local dur = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests, dur, summary.requests / dur,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
