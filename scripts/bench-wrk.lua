-- wrk script for the benchmarks (scripts/bench_matrix.py, bench-lib.sh, bench-tls.sh).
--   BENCH_BODY_BYTES=N  every request is a POST carrying N bytes;
--   BENCH_DELAY_MS=F    each connection waits F ms (on average) before its
--                       next request: a fixed offered load instead of
--                       saturation. wrk's delay is whole milliseconds, so
--                       the fraction is dithered.
--   BENCH_HEADER="name: value"  a header on every request (a JWT, say).
-- Prints one machine-readable line of totals and latency percentiles (µs).
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "")
if body_bytes then
  wrk.method = "POST"
  wrk.body = string.rep("x", body_bytes)
end

local header = os.getenv("BENCH_HEADER")
if header and header ~= "" then
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms then
  local whole = math.floor(delay_ms)
  local fraction = delay_ms - whole
  delay = function()
    if math.random() < fraction then return whole + 1 end
    return whole
  end
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50=%d p99=%d p999=%d\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
