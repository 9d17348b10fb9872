-- Prelude of the kv scripts: one namespace (a plugin) and its exact usage.
-- KEYS[1]: hash key -> size (key plus value bytes) of every live key;
-- KEYS[2]: sorted set key -> expiry (ms) of the keys with a TTL;
-- KEYS[3]: hash {bytes = sum of the sizes};
-- ARGV[1]: prefix of the value keys (the value of `k` is at ARGV[1] .. k).
local now = now_ms()

local function forget(k)
  local size = redis.call('HGET', KEYS[1], k)
  if size then
    redis.call('HDEL', KEYS[1], k)
    redis.call('HINCRBY', KEYS[3], 'bytes', int(-tonumber(size)))
  end
  redis.call('ZREM', KEYS[2], k)
  redis.call('DEL', ARGV[1] .. k)
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[3]) end
end

-- Forgets up to `limit` expired keys (-1: all); returns how many.
local function purge(limit)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  for _, k in ipairs(due) do forget(k) end
  return #due
end

-- Forgets `k` if it has expired.
local function expire(k)
  local at = redis.call('ZSCORE', KEYS[2], k)
  if at and tonumber(at) <= now then forget(k) end
end
