-- Calendar quota, an amount given back. KEYS[1]: the hash {start, total} of quota.lua.
-- ARGV[1]: the start (ms) of the window the amount went to, ARGV[2]: the amount, in
-- decimal. Only while that window is the current one; the total stops at 0. Returns 1.

local h = redis.call('HMGET', KEYS[1], 'start', 'total')
if h[1] ~= ARGV[1] or not h[2] then return 1 end
local total = '0'
if not le(h[2], ARGV[2]) then total = sub(h[2], ARGV[2]) end
redis.call('HSET', KEYS[1], 'total', total)
return 1
