-- revoke: KEYS[1] the user's generation, KEYS[2] the user's index; ARGV[1]
-- the user's session key prefix, ARGV[2] the public ID. Returns 1 if a live
-- session went, else 0.
local g = redis.call('GET', KEYS[1])
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local k = ARGV[1] .. m
  local v = redis.call('HMGET', k, '@id', '@g')
  if v[1] == ARGV[2] then
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[2], m)
    if g and v[2] == g then return 1 end
    return 0
  end
end
return 0
