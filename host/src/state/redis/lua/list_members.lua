-- Live members with their expiries: {member, expiry, member, expiry, ...}.
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. int(now), '+inf', 'WITHSCORES')
