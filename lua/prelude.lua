-- Shared by the per-session scripts. KEYS[1] is the session hash; for a
-- user's session KEYS[2] is the user's generation and KEYS[3] the user's
-- index. ARGV[1] is the session's token hash (its index member), ARGV[2] the
-- user ID the caller expects ('' while anonymous). Times come from the
-- server's clock, so app servers with skewed clocks agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- now_us is a fresh generation number: microseconds, so a generation lost
-- to eviction is re-created larger than any it could be confused with.
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function ms(n)
  return string.format('%d', n)
end

-- forget deletes the session and its index entry, then returns code.
local function forget(code)
  redis.call('DEL', KEYS[1])
  if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[1]) end
  return code
end

-- remaining checks a session's user (u), absolute end (x) and generation (g)
-- and returns the milliseconds it has left (> 0), or a code: 0 missing,
-- -1 expired, -2 revoked, -3 another user's, -4 corrupt. A dead session is
-- deleted on the way, so nothing can write it back.
local function remaining(u, x, g, now)
  if not u and not x then return 0 end
  if u ~= ARGV[2] then return -3 end
  x = tonumber(x)
  if not x then return forget(-4) end
  if KEYS[2] then
    if not g then return forget(-4) end
    if redis.call('GET', KEYS[2]) ~= g then return forget(-2) end
  end
  local left = x - now
  if left <= 0 then return forget(-1) end
  return left
end

local function fields(h)
  local f = {}
  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
  return f
end

-- slide restarts the idle clock, never past the absolute end. own is the
-- session's own idle timeout (a remembered session's '@i'), which wins over
-- the caller's idle.
local function slide(idle, left, own)
  redis.call('PEXPIRE', KEYS[1], math.min(tonumber(own) or tonumber(idle), left))
end

-- extend makes key live at least ms more; it never shortens a TTL and never
-- leaves the key without one.
local function extend(key, ms)
  local t = redis.call('PTTL', key)
  if t == -1 or (t >= 0 and t < ms) then redis.call('PEXPIRE', key, ms) end
end

-- cap_sessions revokes the least recently seen of a user's sessions (index
-- idx, generation g, keys prefix .. member) until at most cap are left,
-- never keep; on the way it drops sessions of another generation. A cap of
-- 0 means none.
local function cap_sessions(idx, keep, g, cap, prefix)
  if cap <= 0 or redis.call('ZCARD', idx) <= cap then return end
  local others = {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if m ~= keep then
      local v = redis.call('HMGET', prefix .. m, '@s', '@g')
      if v[1] and v[2] == g then
        others[#others + 1] = {m, tonumber(v[1]) or 0}
      else
        redis.call('DEL', prefix .. m)
        redis.call('ZREM', idx, m)
      end
    end
  end
  table.sort(others, function(a, b) return a[2] < b[2] end)
  for i = 1, #others + 1 - cap do
    redis.call('DEL', prefix .. others[i][1])
    redis.call('ZREM', idx, others[i][1])
  end
end
