-- Calendar quota. KEYS[1]: a hash {start = window start in ms, total}. ARGV[1]: window
-- length in seconds (UTC-aligned), ARGV[2]: amount to add ('' to only read), ARGV[3]:
-- limit. Amounts and totals are u64 in decimal strings, added digit by digit: Lua numbers
-- would round past 2^53. Returns {allowed, total, reset_ms}.

-- Sum of two non-negative decimal strings.
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
  end
  return string.reverse(table.concat(out))
end

-- a <= b for decimal strings without leading zeros.
local function le(a, b)
  if #a ~= #b then return #a < #b end
  for k = 1, #a do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return true
end

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
