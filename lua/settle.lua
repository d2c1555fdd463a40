-- settle: after an update that found its session not live (store_redis_read.go),
-- deletes what the update's writes may have left behind: a hash with no
-- metadata (the update recreated a missing session) or a dead session.
-- Returns 0, or a code from remaining.
local m = redis.call('HMGET', KEYS[1], '@u', '@x', '@g')
if not m[1] and not m[2] then
  redis.call('DEL', KEYS[1])
  return 0
end
return remaining(m[1], m[2], m[3], now_ms())
