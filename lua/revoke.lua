-- revoke: KEYS[1] the user's generation, KEYS[2] the user's index; ARGV[1]
-- the user's session key prefix, ARGV[2] the public ID. Returns 1 if a live
-- session went, else 0. A live session's ID is recorded in the user's
-- revoked set (P{T}:rev, scored by the session's absolute end, which a
-- restored copy of it cannot outlive), so create never restores it.
local g = redis.call('GET', KEYS[1])
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local k = ARGV[1] .. m
  local v = redis.call('HMGET', k, '@id', '@g', '@x')
  if v[1] == ARGV[2] then
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[2], m)
    if g and v[2] == g then
      -- After the DEL, so that a full Redis still takes the logout.
      local x, rev, now = tonumber(v[3]), ARGV[1] .. 'rev', now_ms()
      if x and x > now then
        redis.call('ZREMRANGEBYSCORE', rev, '-inf', now)
        redis.call('ZADD', rev, x, ARGV[2])
        extend(rev, x - now)
      end
      return 1
    end
    return 0
  end
end
return 0
