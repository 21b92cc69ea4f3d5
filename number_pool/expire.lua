-- expire(prefix, now) -> how many leases ran out, over every pool
local freed = 0
for _, pool in ipairs(redis.call('SMEMBERS', key(KIND.pools))) do
  local K = pool_keys(pool)
  freed = freed + expire_pool(K, clamp(K, tonumber(ARGV[2])))
end
return freed
