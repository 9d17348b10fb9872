-- kv-delete. ARGV[2]: key. Returns 1 if a live key was deleted.
local key = ARGV[2]
expire(key)
if redis.call('HEXISTS', KEYS[1], key) == 0 then return 0 end
forget(key)
return 1
