-- kv-set and kv-add. ARGV[2]: key, ARGV[3]: value, ARGV[4]: TTL in ms ('' for none),
-- ARGV[5]: '1' to set only if absent, ARGV[6]: max keys, ARGV[7]: max bytes.
-- KEYS[4]: the value key. Returns 1 set, 0 present (add), -1 key cap, -2 byte cap.
local key, value = ARGV[2], ARGV[3]
purge(1000)
expire(key)
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[1], key) == 1 then return 0 end
local size = #key + #value

-- Refused when the write would pass a cap and grow usage: shrinking is always allowed.
local function over()
  local old = tonumber(redis.call('HGET', KEYS[1], key) or '0')
  local keys_before = redis.call('HLEN', KEYS[1])
  local keys_after = keys_before + 1 - redis.call('HEXISTS', KEYS[1], key)
  local bytes_before = tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')
  local bytes_after = bytes_before - old + size
  if keys_after > tonumber(ARGV[6]) and keys_after > keys_before then return -1 end
  if bytes_after > tonumber(ARGV[7]) and bytes_after > bytes_before then return -2 end
  return nil
end

local refused = over()
if refused and purge(-1) > 0 then refused = over() end
if refused then return refused end
local old = tonumber(redis.call('HGET', KEYS[1], key) or '0')
redis.call('HSET', KEYS[1], key, size)
redis.call('HINCRBY', KEYS[3], 'bytes', int(size - old))
if ARGV[4] == '' then
  redis.call('SET', KEYS[4], value)
  redis.call('ZREM', KEYS[2], key)
else
  local at = int(now + tonumber(ARGV[4]))
  redis.call('SET', KEYS[4], value, 'PXAT', at)
  redis.call('ZADD', KEYS[2], at, key)
end
return 1
