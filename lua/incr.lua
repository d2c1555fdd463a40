-- incr: ARGV[3] idle ms, ARGV[4] field, ARGV[5] delta.
-- Returns {new value}, or a code.
local now = now_ms()
local m = redis.call('HMGET', KEYS[1], '@u', '@x', '@g')
local left = remaining(m[1], m[2], m[3], now)
if left <= 0 then return left end
local v = redis.call('HINCRBY', KEYS[1], ARGV[4], ARGV[5])
slide(ARGV[3], left)
return {v}
