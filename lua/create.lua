-- create: ARGV[3] idle ms, ARGV[4] lifetime ms, ARGV[5] created ms or '' for
-- now, ARGV[6] absolute end ms or '' for now + lifetime, ARGV[7] cap on the
-- user's sessions (0: none), ARGV[8] the user's session key prefix, ARGV[9]
-- for a restored session the microsecond up to which its restorer saw the
-- user's revocations ('0': unknown), else '', then field/value pairs, the
-- first being '@id' and the session's public ID. Returns {created, last
-- seen, expires}, or a code (-5: the key exists; -2: revoked meanwhile).
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  local m = redis.call('HMGET', KEYS[1], '@u', '@x')
  if m[1] or m[2] then return -5 end
  -- no session, but what a write to an ended one left (store_redis_read.go)
  redis.call('DEL', KEYS[1])
end
if ARGV[9] ~= '' and KEYS[2] then
  -- A restored session never outlives a revocation: not of its public ID
  -- (revoke records those), nor a RevokeAll after its restorer's horizon
  -- (a generation made by RevokeAll is a bare time; one made here is not).
  if redis.call('ZSCORE', ARGV[8] .. 'rev', ARGV[11]) then return -2 end
  local h, g = tonumber(ARGV[9]), tonumber(redis.call('GET', KEYS[2]) or '')
  if h > 0 and g and g > h then return -2 end
end
local c = tonumber(ARGV[5]) or now
local x = tonumber(ARGV[6]) or (now + tonumber(ARGV[4]))
local left = x - now
if left <= 0 then return -1 end
local g = ''
if KEYS[2] then
  g = redis.call('GET', KEYS[2])
  if not g then
    g = 'c' .. now_us()
    redis.call('SET', KEYS[2], g, 'PX', left)
  end
  extend(KEYS[2], left)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZADD', KEYS[3], x, ARGV[1])
  extend(KEYS[3], left)
  cap_sessions(KEYS[3], ARGV[1], g, tonumber(ARGV[7]), ARGV[8])
end
redis.call('HSET', KEYS[1], '@u', ARGV[2], '@c', ms(c), '@s', ms(now), '@x', ms(x), '@g', g)
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
slide(ARGV[3], left)
return {ms(c), ms(now), ms(x)}
