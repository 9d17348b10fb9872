-- GCRA, a charge given back. KEYS[1]: the theoretical arrival time (TAT), in microseconds
-- since the epoch. ARGV[1]: the charge (interval * cost) in microseconds. The TAT moves
-- back by it; at or before now the key is the same as absent, so it goes. Returns 1.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if not tat then return 1 end
local back = tat - tonumber(ARGV[1])
if back <= now then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('SET', KEYS[1], string.format('%.17g', back), 'PX', int(math.floor((back - now) / 1000) + 1))
return 1
