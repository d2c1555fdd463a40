-- list: KEYS[1] the user's generation, KEYS[2] the user's index; ARGV[1]
-- the user's session key prefix. Returns 7 values per live session: id,
-- created, last seen, expires, user agent, IP, remembered ('1' or '').
-- Drops dead index entries.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local g = redis.call('GET', KEYS[1])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local k = ARGV[1] .. m
  local v = redis.call('HMGET', k, '@g', '@id', '@c', '@s', '@x', '@ua', '@ip', '@r')
  if v[1] and v[1] == g then
    for i = 2, 8 do out[#out + 1] = v[i] or '' end
  else
    if v[1] then redis.call('DEL', k) end
    redis.call('ZREM', KEYS[2], m)
  end
end
return out
