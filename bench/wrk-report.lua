-- wrk script for the fedmeshd local HTTP API (used by bench/api-wrk.sh).
--
-- Why it exists: every API route but the health probes needs a bearer token,
-- and wrk's own report is meant for people, not for docs/benchmarks.md or a
-- comparison script. This adds the Authorization header from the environment
-- and, once the run is over, prints one key=value line per result.
--
-- Usage:
--   FEDMESH_TOKEN=$(cat STATE/api.token) \
--     wrk -t2 -c32 -d10s --latency -s bench/wrk-report.lua http://ADDR/v1/status
--
-- Output lines (after wrk's own report):
--   requests_per_s   completed requests / run duration
--   latency_p50_ms, latency_p99_ms, latency_max_ms
--   errors           non-2xx/3xx answers (wrk counts status >= 400) plus
--                    socket errors (connect, read, write, timeout)
--   and the parts: requests, duration_s, errors_status, errors_connect,
--   errors_read, errors_write, errors_timeout
--
-- No response() callback on purpose: defining one makes wrk call into Lua
-- for every answer, which would slow the client down, not the server.

local token = os.getenv("FEDMESH_TOKEN")
if token == nil or token == "" then
	io.stderr:write("wrk-report.lua: set FEDMESH_TOKEN to the daemon's "
		.. "api.token (64 hex characters)\n")
	os.exit(2)
end
token = token:gsub("%s+$", "")
if not token:match("^%x+$") or #token ~= 64 then
	io.stderr:write("wrk-report.lua: FEDMESH_TOKEN is not 64 hex characters\n")
	os.exit(2)
end

wrk.headers["Authorization"] = "Bearer " .. token

local function ms(us)
	return string.format("%.3f", us / 1000.0)
end

function done(summary, latency, requests)
	local e = summary.errors
	local socket_errors = e.connect + e.read + e.write + e.timeout
	local duration_s = summary.duration / 1e6
	local rps = 0
	if duration_s > 0 then
		rps = summary.requests / duration_s
	end

	io.write(string.format("requests=%d\n", summary.requests))
	io.write(string.format("duration_s=%.3f\n", duration_s))
	io.write(string.format("requests_per_s=%.1f\n", rps))
	io.write("latency_p50_ms=" .. ms(latency:percentile(50)) .. "\n")
	io.write("latency_p99_ms=" .. ms(latency:percentile(99)) .. "\n")
	io.write("latency_max_ms=" .. ms(latency.max) .. "\n")
	io.write(string.format("errors=%d\n", e.status + socket_errors))
	io.write(string.format("errors_status=%d\n", e.status))
	io.write(string.format("errors_connect=%d\n", e.connect))
	io.write(string.format("errors_read=%d\n", e.read))
	io.write(string.format("errors_write=%d\n", e.write))
	io.write(string.format("errors_timeout=%d\n", e.timeout))
end
