-- ARGV[1]: member. Returns 1 if live.
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) > now then return 1 end
return 0
