-- create: ARGV[3] idle ms, ARGV[4] lifetime ms, ARGV[5] created ms or '' for
-- now, ARGV[6] absolute end ms or '' for now + lifetime, ARGV[7] cap on the
-- user's sessions (0: none), ARGV[8] the user's session key prefix, ARGV[9]
-- for a restored session the microsecond up to which its restorer saw the
-- user's revocations ('0': unknown), else '', then field/value pairs, the
-- first being '@id' and the session's public ID. Returns {created, last
-- seen, expires}, or a code (-5: the key exists; -2: revoked meanwhile).
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then return -5 end
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
  local cap = tonumber(ARGV[7])
  if cap > 0 and redis.call('ZCARD', KEYS[3]) > cap then
    -- Revoke the least recently seen others until the cap holds.
    local others = {}
    for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      if m ~= ARGV[1] then
        local v = redis.call('HMGET', ARGV[8] .. m, '@s', '@g')
        if v[1] and v[2] == g then
          others[#others + 1] = {m, tonumber(v[1]) or 0}
        else
          redis.call('DEL', ARGV[8] .. m)
          redis.call('ZREM', KEYS[3], m)
        end
      end
    end
    table.sort(others, function(a, b) return a[2] < b[2] end)
    for i = 1, #others + 1 - cap do
      redis.call('DEL', ARGV[8] .. others[i][1])
      redis.call('ZREM', KEYS[3], others[i][1])
    end
  end
end
redis.call('HSET', KEYS[1], '@u', ARGV[2], '@c', ms(c), '@s', ms(now), '@x', ms(x), '@g', g)
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
slide(ARGV[3], left)
return {ms(c), ms(now), ms(x)}
