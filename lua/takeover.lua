-- takeover: deletes a live session and returns its field/value list, for a
-- rotation to carry over; or a code. ARGV[3] and ARGV[4], if given, name
-- the rotation's new session and its public ID, sent in the same pipeline
-- on a single node: unless that session is there (its create was refused,
-- or found the key taken), the old one is left alone (-6).
if ARGV[3] and redis.call('HGET', ARGV[3], '@id') ~= ARGV[4] then return -6 end
local now = now_ms()
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
local f = fields(h)
local left = remaining(f['@u'], f['@x'], f['@g'], now)
if left <= 0 then return left end
forget(1)
return h
