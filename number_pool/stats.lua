-- stats(prefix, pool, now) -> {'unknown'} | {'ok', size, live, peak, exhausted}
local K = pool_keys(ARGV[2])
if redis.call('EXISTS', K.config) == 0 then
  return {'unknown'}
end
local counters = redis.call('HMGET', K.config, 'peak', 'exhausted')
return {
  'ok',
  redis.call('HLEN', K.order),
  redis.call('ZCOUNT', K.expiry, '(' .. ARGV[3], '+inf'),
  tonumber(counters[1]) or 0,
  tonumber(counters[2]) or 0,
}
