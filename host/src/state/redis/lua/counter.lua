-- Windowed counter. KEYS[1]: the total, expiring with its window. ARGV[1]: delta,
-- ARGV[2]: window in ms (starting at the first add). Saturates at the i64 bounds.
-- Returns the new total as a string (exact, unlike a Lua number).
redis.call('SET', KEYS[1], '0', 'PX', ARGV[2], 'NX')
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then
  local bound = '9223372036854775807'
  if string.sub(ARGV[1], 1, 1) == '-' then bound = '-9223372036854775808' end
  redis.call('SET', KEYS[1], bound, 'KEEPTTL')
end
return redis.call('GET', KEYS[1])
