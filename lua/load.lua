-- load: ARGV[3] idle ms, ARGV[4] touch interval ms, ARGV[5] user agent, ARGV[6] IP.
-- Returns the hash's field/value list, or a code from remaining.
local now = now_ms()
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
local f = fields(h)
local left = remaining(f['@u'], f['@x'], f['@g'], now)
if left <= 0 then return left end
slide(ARGV[3], left, f['@i'])
-- touched every ARGV[4] ms, or every half idle timeout if that is shorter,
-- so that a session in use never expires between touches (the plain read,
-- store_redis_read.go, slides nothing)
local every = math.min(tonumber(ARGV[4]), math.floor((tonumber(f['@i']) or tonumber(ARGV[3])) / 2))
if now - (tonumber(f['@s']) or 0) >= every then
  local s = ms(now)
  redis.call('HSET', KEYS[1], '@s', s, '@ua', ARGV[5], '@ip', ARGV[6])
  local n = #h
  h[n + 1], h[n + 2], h[n + 3], h[n + 4], h[n + 5], h[n + 6] = '@s', s, '@ua', ARGV[5], '@ip', ARGV[6]
end
return h
