-- revokeall: KEYS[1] the user's generation, KEYS[2] the user's index;
-- ARGV[1] the user's session key prefix, ARGV[2] the member to keep ('' for
-- none), ARGV[3] how long (ms) at least the new generation is kept, so that
-- a session restored after an outage finds it. Moves the user to a new
-- generation (a bare microsecond time: create tells it apart), so every
-- session of the old one is dead on its next use even if the index lost it,
-- deletes the indexed ones, and returns how many of those were live.
local old = redis.call('GET', KEYS[1])
local g = now_us()
if old and tonumber(old) and tonumber(old) >= tonumber(g) then
  g = string.format('%d', tonumber(old) + 1)
end
-- The old generation outlives every session of it (create extends it), so
-- keeping its TTL keeps the kept session valid; without an old one, no
-- session needs the new one yet.
redis.call('SET', KEYS[1], g, 'PX', math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[3])))
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if m ~= ARGV[2] then
    local k = ARGV[1] .. m
    if old and redis.call('HGET', k, '@g') == old then n = n + 1 end
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[2], m)
  end
end
if ARGV[2] ~= '' then
  local k = ARGV[1] .. ARGV[2]
  local kg = redis.call('HGET', k, '@g')
  if kg and kg == old then redis.call('HSET', k, '@g', g) end
end
return n
