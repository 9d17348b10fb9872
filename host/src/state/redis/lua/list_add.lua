-- ARGV[1]: member, ARGV[2]: TTL in ms ('' for none), ARGV[3]: max live members.
-- Returns 1 new, 0 refreshed, -1 refused (full).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local at = NEVER
if ARGV[2] ~= '' then at = math.min(now + tonumber(ARGV[2]), NEVER - 1) end
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not old and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], int(at), ARGV[1])
if old then return 0 end
return 1
