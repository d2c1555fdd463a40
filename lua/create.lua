-- create: ARGV[3] idle ms, ARGV[4] lifetime ms, ARGV[5] created ms or '' for
-- now, ARGV[6] absolute end ms or '' for now + lifetime, ARGV[7] cap on the
-- user's sessions (0: none), ARGV[8] the user's session key prefix, then
-- field/value pairs. Returns {created, last seen, expires}, or a code
-- (-5: the key exists).
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then return -5 end
local c = tonumber(ARGV[5]) or now
local x = tonumber(ARGV[6]) or (now + tonumber(ARGV[4]))
local left = x - now
if left <= 0 then return -1 end
local g = ''
if KEYS[2] then
  g = redis.call('GET', KEYS[2])
  if not g then
    g = now_us()
    redis.call('SET', KEYS[2], g, 'PX', left)
  end
  extend(KEYS[2], left)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZADD', KEYS[3], x, ARGV[1])
  extend(KEYS[3], left)
  cap_sessions(KEYS[3], ARGV[1], g, tonumber(ARGV[7]), ARGV[8])
end
redis.call('HSET', KEYS[1], '@u', ARGV[2], '@c', ms(c), '@s', ms(now), '@x', ms(x), '@g', g)
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
slide(ARGV[3], left)
return {ms(c), ms(now), ms(x)}
