-- ARGV[1]: member. Returns 1 if a live member was removed.
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(at) > now then return 1 end
return 0
