-- rotate: moves a user's live session to a new token of the same user, in
-- one step, so that no revocation can fall between its end and the new
-- one's start. KEYS[1..3] as in the prelude for the old session, KEYS[4] the
-- new session. ARGV[3] idle ms, ARGV[4] lifetime ms, ARGV[5] '1' to renew
-- (keep the public ID, creation time and absolute end) or '0' for a login
-- (new ID and lifetime), ARGV[6] cap on the user's sessions (0: none),
-- ARGV[7] the user's session key prefix, ARGV[8] the new session's hash,
-- ARGV[9] the new public ID, ARGV[10] user agent, ARGV[11] IP, ARGV[12] the
-- number n of fields to set, then n field/value pairs (values, and a
-- remembered login's @r and @i), then the value
-- fields to delete: the request's change, applied over the old session's
-- values as they are now. Returns the new hash's field/value list, or a
-- code: 0 and below as remaining, -5 if the new key exists. On a code
-- nothing is written, except that a dead old session is deleted.
local now = now_ms()
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
local f = fields(h)
local left = remaining(f['@u'], f['@x'], f['@g'], now)
if left <= 0 then return left end
if redis.call('EXISTS', KEYS[4]) == 1 then return -5 end

local id, c, x = ARGV[9], now, now + tonumber(ARGV[4])
if ARGV[5] == '1' then
  id, c, x = f['@id'], tonumber(f['@c']), tonumber(f['@x'])
  if not id or not c then return forget(-4) end
end
left = x - now
if left <= 0 then return forget(-1) end

local values = {}
for name, v in pairs(f) do
  -- A renewal also keeps the session's "remember me" mark and idle timeout.
  if string.sub(name, 1, 2) == 'v:' or (ARGV[5] == '1' and (name == '@r' or name == '@i')) then
    values[name] = v
  end
end
local n = tonumber(ARGV[12])
for i = 13 + 2 * n, #ARGV do values[ARGV[i]] = nil end
for i = 13, 12 + 2 * n, 2 do values[ARGV[i]] = ARGV[i + 1] end

-- The old session goes first: DEL is allowed when Redis is out of memory
-- and, once a script has written, so is the rest, so under OOM the
-- rotation is done whole rather than refused half way.
forget(1)
local g = f['@g']
extend(KEYS[2], left)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], x, ARGV[8])
extend(KEYS[3], left)
cap_sessions(KEYS[3], ARGV[8], g, tonumber(ARGV[6]), ARGV[7])
redis.call('HSET', KEYS[4], '@u', ARGV[2], '@id', id, '@c', ms(c), '@s', ms(now), '@x', ms(x),
  '@g', g, '@ua', ARGV[10], '@ip', ARGV[11])
for name, v in pairs(values) do redis.call('HSET', KEYS[4], name, v) end
redis.call('PEXPIRE', KEYS[4], math.min(tonumber(values['@i']) or tonumber(ARGV[3]), left))
return redis.call('HGETALL', KEYS[4])
