-- update: ARGV[3] idle ms, ARGV[4] number of fields to set (n), then n
-- field/value pairs, then the fields to delete. Returns 1, or a code.
local now = now_ms()
local m = redis.call('HMGET', KEYS[1], '@u', '@x', '@g', '@i')
local left = remaining(m[1], m[2], m[3], now)
if left <= 0 then return left end
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 5 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
slide(ARGV[3], left, m[4])
return 1
