-- GCRA. KEYS[1]: the theoretical arrival time (TAT), in microseconds since the epoch.
-- ARGV[1]: the burst's span (interval * burst), ARGV[2]: this request's charge
-- (interval * cost), both in microseconds. Returns {allowed, left_us, retry_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local charge = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + charge
local used = new_tat - now
if used > limit then
  local left = limit - (tat - now)
  if left < 0 then left = 0 end
  return {0, int(left), int(used - limit)}
end
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', int(math.floor(used / 1000) + 1))
return {1, int(limit - used), '0'}
