-- cache_fill: KEYS[1] the cached copy, KEYS[2] the floor; ARGV[1] the
-- version read from PostgreSQL, ARGV[2] the record, ARGV[3] its time to live
-- in ms, ARGV[4] the age of its last-seen time in ms (kept as a time on
-- Redis's clock, for cache_load to compare with the touch interval). Writes the copy only if its version is at or above the floor (so
-- nothing read before a write or a delete gets in after it) and above the
-- copy already there. Returns 1 if it wrote.
local v = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if v < floor then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') or 0
if cur >= v then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', ARGV[2], 't', string.format('%d', now - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
