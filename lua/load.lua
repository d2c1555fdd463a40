-- load: ARGV[3] idle ms, ARGV[4] touch interval ms, ARGV[5] user agent, ARGV[6] IP.
-- Returns the hash's field/value list, or a code from remaining.
local now = now_ms()
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
local f = fields(h)
local left = remaining(f['@u'], f['@x'], f['@g'], now)
if left <= 0 then return left end
slide(ARGV[3], left, f['@i'])
if now - (tonumber(f['@s']) or 0) >= tonumber(ARGV[4]) then
  local s = ms(now)
  redis.call('HSET', KEYS[1], '@s', s, '@ua', ARGV[5], '@ip', ARGV[6])
  local n = #h
  h[n + 1], h[n + 2], h[n + 3], h[n + 4], h[n + 5], h[n + 6] = '@s', s, '@ua', ARGV[5], '@ip', ARGV[6]
end
return h
