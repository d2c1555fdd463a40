-- incr: ARGV[3] idle ms, ARGV[4] field, ARGV[5] delta.
-- Returns {new value as a string}, or a code.
--
-- The integer syntax is Redis's own (string2ll, as HINCRBY reads a hash
-- value), checked here so that a server that is lax about it (miniredis
-- reads "+5", "05" and "-0", and wraps past the int64 range) agrees with
-- Redis and with MemoryStore: '0', or an optional '-' then a digit 1-9 and
-- more digits, within the int64 range.

-- The int64 limits split as int64_parts splits a magnitude.
local limit_hi, max_lo, min_lo = 9223372036, 854775807, 854775808

-- int64_parts splits an integer string into its sign and its magnitude as
-- two exact doubles, the digits above the low 9 and the low 9, or returns
-- nil if s is not an integer by Redis's rules.
local function int64_parts(s)
  if s == '0' then return false, 0, 0 end
  local sign, digits = s:match('^(%-?)([1-9]%d*)$')
  if not digits or #digits > 19 then return nil end
  local neg = sign == '-'
  local hi, lo = tonumber(digits:sub(1, -10)) or 0, tonumber(digits:sub(-9))
  local lim_lo = max_lo
  if neg then lim_lo = min_lo end
  if hi > limit_hi or (hi == limit_hi and lo > lim_lo) then return nil end
  return neg, hi, lo
end

-- overflows reports whether a + b leaves the int64 range. Only operands of
-- one sign can; their magnitudes are added part by part, each sum exact in
-- a double, and compared with the limit of that sign.
local function overflows(aneg, ahi, alo, bneg, bhi, blo)
  if aneg ~= bneg then return false end
  local lo = alo + blo
  local hi = ahi + bhi + math.floor(lo / 1e9)
  lo = lo % 1e9
  local lim_lo = max_lo
  if aneg then lim_lo = min_lo end
  return hi > limit_hi or (hi == limit_hi and lo > lim_lo)
end

local not_integer = 'ERR hash value is not an integer'

local now = now_ms()
local m = redis.call('HMGET', KEYS[1], '@u', '@x', '@g', ARGV[4], '@i')
local left = remaining(m[1], m[2], m[3], now)
if left <= 0 then return left end
local cur = m[4] or '0' -- absent counts as 0; present and empty does not
local aneg, ahi, alo = int64_parts(cur)
if aneg == nil then return redis.error_reply(not_integer) end
local bneg, bhi, blo = int64_parts(ARGV[5])
if bneg == nil then return redis.error_reply(not_integer) end
if overflows(aneg, ahi, alo, bneg, bhi, blo) then
  return redis.error_reply('ERR increment or decrement would overflow')
end
redis.call('HINCRBY', KEYS[1], ARGV[4], ARGV[5])
slide(ARGV[3], left, m[5])
-- HINCRBY's reply would pass through a Lua number (a double) and lose
-- precision past 2^53; the stored string is exact.
return {redis.call('HGET', KEYS[1], ARGV[4])}
