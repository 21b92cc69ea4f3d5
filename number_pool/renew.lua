-- renew(prefix, pool, visit, now) -> {'unknown'} | {'none'} | {'renewed', lease json}
local pool, visit, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local K = pool_keys(pool)
if redis.call('EXISTS', K.config) == 0 then
  return {'unknown'}
end
now = clamp(K, now)
expire_pool(K, now)
local visitor = redis.call('HGET', K.visit, visit)
local raw = visitor and redis.call('HGET', K.lease, visitor)
if not raw then
  return {'none'}
end
local l = cjson.decode(raw)
-- A removed number is not extended: its lease runs out and the next lease() moves on.
if l.s ~= visit or not configured(K, l.n) then
  return {'none'}
end
touch(K, l, now, tonumber(redis.call('HGET', K.config, 'hold')))
return {'renewed', cjson.encode(l)}
