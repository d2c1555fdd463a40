-- cache_load: KEYS[1] the cached copy; ARGV[1] the touch interval in ms.
-- Returns 0 on a miss, else {version, record, stale}: stale is 1 when the
-- session's last-seen time is a touch interval old or more.
local d = redis.call('HMGET', KEYS[1], 'v', 'r', 't')
if not d[1] or not d[2] or not d[3] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = 0
if now - tonumber(d[3]) >= tonumber(ARGV[1]) then stale = 1 end
return {d[1], d[2], stale}
