-- lease(prefix, pool, visitor, visit, now, retention) -> {status[, lease json]}
local pool, visitor, visit = ARGV[2], ARGV[3], ARGV[4]
local now, retention = tonumber(ARGV[5]), tonumber(ARGV[6])
local K = pool_keys(pool)
if redis.call('EXISTS', K.config) == 0 then
  return {'unknown'}
end
now = clamp(K, now)
expire_pool(K, now)
local config = redis.call('HMGET', K.config, 'hold', 'policy')
local hold, policy = tonumber(config[1]), config[2]

-- The member with the lowest score, ties to the earliest in the config; unconfigured skipped.
-- Read in pages: the answer is nearly always on the first one.
local function lowest(zset)
  local best, best_score, best_index = nil, nil, nil
  local start, page = 0, 32
  while true do
    local entries = redis.call('ZRANGE', zset, start, start + page - 1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      local score = tonumber(entries[i + 1])
      if best_score and score > best_score then
        return best
      end
      local index = tonumber(redis.call('HGET', K.order, entries[i]))
      if index and (not best or index < best_index) then
        best, best_score, best_index = entries[i], score, index
      end
    end
    if #entries < 2 * page then
      return best
    end
    start = start + page
  end
end

-- policy.choose_free: never-leased numbers first (by config order), then idle longest.
local function take_free()
  local number = redis.call('ZRANGE', K.fresh, 0, 0)[1]
  if number then
    redis.call('ZREM', K.fresh, number)
    return number
  end
  local first = redis.call('ZRANGE', K.free, 0, 0, 'WITHSCORES')
  if not first[1] then
    return nil
  end
  local best, best_index = nil, nil
  for _, candidate in ipairs(redis.call('ZRANGEBYSCORE', K.free, first[2], first[2])) do
    local index = tonumber(redis.call('HGET', K.order, candidate))
    if not best or index < best_index then
      best, best_index = candidate, index
    end
  end
  redis.call('ZREM', K.free, best)
  return best
end

local raw = redis.call('HGET', K.lease, visitor)
if raw then
  local l = cjson.decode(raw)
  if configured(K, l.n) then
    if l.s ~= visit then
      save_record(l, fmt(now))
      if redis.call('HGET', K.visit, l.s) == visitor then
        redis.call('HDEL', K.visit, l.s)
      end
      l.s, l.a = visit, fmt(now)
      redis.call('HSET', K.visit, visit, visitor)
    end
    touch(K, l, now, hold)
    return {'reused', cjson.encode(l)}
  end
  -- Their number was removed from the pool: end that lease and hand out another.
  save_record(l, fmt(now))
  end_lease(K, l, now)
end

local status, number = 'new', take_free()
if not number then
  redis.call('HINCRBY', K.config, 'exhausted', 1)
  if policy == 'share_oldest' then
    number = lowest(K.busy)
  end
  if not number then
    return {'exhausted'}
  end
  status = 'shared'
end
local l = {p = pool, n = number, v = visitor, s = visit, a = fmt(now), l = fmt(now),
           e = fmt(now + hold), sh = status == 'shared'}
redis.call('HSET', K.lease, visitor, cjson.encode(l))
redis.call('ZADD', K.expiry, l.e, visitor)
redis.call('HSET', K.visit, visit, visitor)
local holders = cjson.decode(redis.call('HGET', K.holders, number) or '[]')
holders[#holders + 1] = visitor
redis.call('HSET', K.holders, number, cjson.encode(holders))
redis.call('ZADD', K.busy, l.l, number)
save_record(l, l.e)
trim_history(number, now - retention)
local live = redis.call('ZCARD', K.expiry)
if live > (tonumber(redis.call('HGET', K.config, 'peak')) or 0) then
  redis.call('HSET', K.config, 'peak', live)
end
return {status, cjson.encode(l)}
