-- takeover: deletes a live session and returns its field/value list, for a
-- rotation to carry over; or a code.
local now = now_ms()
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return 0 end
local f = fields(h)
local left = remaining(f['@u'], f['@x'], f['@g'], now)
if left <= 0 then return left end
forget(1)
return h
