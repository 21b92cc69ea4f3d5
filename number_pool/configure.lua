-- configure(prefix, pool, hold, policy, number...) ; validated by the caller
local pool = ARGV[2]
local K = pool_keys(pool)
redis.call('SADD', key(KIND.pools), pool)
redis.call('HSET', K.config, 'hold', ARGV[3], 'policy', ARGV[4])
local previous = redis.call('HKEYS', K.order)
redis.call('DEL', K.order)
local wanted = {}
for i = 5, #ARGV do
  local number, index = ARGV[i], i - 5
  wanted[number] = true
  redis.call('HSET', K.order, number, index)
  if redis.call('HEXISTS', K.holders, number) == 0 then
    local idle = redis.call('HGET', K.idle, number)
    if idle then
      redis.call('ZADD', K.free, idle, number)
    else
      redis.call('ZADD', K.fresh, index, number)
    end
  end
end
-- Removed numbers leave the free sets; live leases on them run out on their own.
for _, number in ipairs(previous) do
  if not wanted[number] then
    redis.call('ZREM', K.free, number)
    redis.call('ZREM', K.fresh, number)
  end
end
return 'ok'
