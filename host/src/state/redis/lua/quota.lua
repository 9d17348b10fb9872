-- Calendar quota. KEYS[1]: a hash {start = window start in ms, total}. ARGV[1]: window
-- length in seconds (UTC-aligned), ARGV[2]: amount to add ('' to only read), ARGV[3]:
-- limit. Amounts and totals are u64 in decimal strings, added digit by digit: Lua numbers
-- would round past 2^53. Returns {allowed, total, reset_ms}.

local secs = tonumber(redis.call('TIME')[1])
local len = tonumber(ARGV[1])
local start = secs - secs % len
local start_ms = int(start * 1000)
local reset = int((start + len) * 1000)
local h = redis.call('HMGET', KEYS[1], 'start', 'total')
local total = '0'
if h[1] == start_ms and h[2] then total = h[2] end
if ARGV[2] == '' then return {1, total, reset} end
local sum = add(total, ARGV[2])
if not le(sum, ARGV[3]) then return {0, total, reset} end
redis.call('HSET', KEYS[1], 'start', start_ms, 'total', sum)
redis.call('PEXPIREAT', KEYS[1], reset)
return {1, sum, reset}
