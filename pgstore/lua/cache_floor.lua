-- cache_floor: KEYS[1] the cached copy, KEYS[2] the floor; ARGV[1] a
-- version, ARGV[2] ms the floor must live at least. Raises the floor to the
-- version (never lowers it) and drops a cached copy older than it.
local v = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if v > floor then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  local pt = redis.call('PTTL', KEYS[2])
  if pt >= 0 and pt < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') or 0
if cur < v then redis.call('DEL', KEYS[1]) end
return 1
