-- Helpers every pool script starts with. redis.py prepends `local KIND = {...}` from
-- constants.py; ARGV[1] is the key prefix. Keys are derived here rather than passed as KEYS
-- because history keys depend on the number chosen inside the script: standalone Redis only.
local PREFIX = ARGV[1]

local function key(kind, id)
  return PREFIX .. kind .. (id or '')
end

-- Times travel as strings: Lua's own number formatting keeps 14 digits, which would round
-- epoch seconds to the millisecond and make Python and Redis disagree.
local function fmt(x)
  return string.format('%.17g', x)
end

local function pool_keys(pool)
  local K = {}
  for _, kind in ipairs({'config', 'order', 'fresh', 'free', 'idle', 'expiry', 'lease', 'visit',
                         'holders', 'busy'}) do
    K[kind] = key(KIND[kind], pool)
  end
  return K
end

local function configured(K, number)
  return redis.call('HEXISTS', K.order, number) == 1
end

-- A lease is {p=pool, n=number, v=visitor, s=visit, a=started, l=last_seen, e=expires, sh=shared};
-- its history record is the same table with e = when it ended.
local function save_record(l, ended)
  local id = cjson.encode({l.p, l.v, l.s, l.a})
  local record = {p = l.p, n = l.n, v = l.v, s = l.s, a = l.a, l = l.l, e = ended, sh = l.sh}
  redis.call('HSET', key(KIND.record, l.n), id, cjson.encode(record))
  redis.call('ZADD', key(KIND.history, l.n), l.a, id)
  local span = tonumber(ended) - tonumber(l.a)
  local longest = tonumber(redis.call('HGET', key(KIND.spans), l.n)) or 0
  if span > longest then
    redis.call('HSET', key(KIND.spans), l.n, fmt(span))
  end
end

-- Forget records that ended before the cutoff; a batch per call keeps each script short.
local function trim_history(number, cutoff)
  local history, records = key(KIND.history, number), key(KIND.record, number)
  local old = redis.call('ZRANGEBYSCORE', history, '-inf', '(' .. fmt(cutoff), 'LIMIT', 0, 100)
  for _, id in ipairs(old) do
    local json = redis.call('HGET', records, id)
    if not json or tonumber(cjson.decode(json).e) < cutoff then
      redis.call('ZREM', history, id)
      redis.call('HDEL', records, id)
    end
  end
end

-- See policy.clamp_now: a pool's time never runs backwards.
local function clamp(K, now)
  local clock = tonumber(redis.call('HGET', K.config, 'clock'))
  if clock and clock > now then
    now = clock
  end
  redis.call('HSET', K.config, 'clock', fmt(now))
  return now
end

-- Drop a lease; its number is free again once its last holder is gone.
local function end_lease(K, l, ended)
  redis.call('HDEL', K.lease, l.v)
  redis.call('ZREM', K.expiry, l.v)
  if redis.call('HGET', K.visit, l.s) == l.v then
    redis.call('HDEL', K.visit, l.s)
  end
  local idle = tonumber(redis.call('HGET', K.idle, l.n))
  if not idle or ended > idle then
    idle = ended
  end
  redis.call('HSET', K.idle, l.n, fmt(idle))
  local rest, busy = {}, nil
  for _, visitor in ipairs(cjson.decode(redis.call('HGET', K.holders, l.n) or '[]')) do
    if visitor ~= l.v then
      rest[#rest + 1] = visitor
      local seen = tonumber(cjson.decode(redis.call('HGET', K.lease, visitor)).l)
      if not busy or seen > busy then
        busy = seen
      end
    end
  end
  if #rest > 0 then
    redis.call('HSET', K.holders, l.n, cjson.encode(rest))
    redis.call('ZADD', K.busy, fmt(busy), l.n)
    return
  end
  redis.call('HDEL', K.holders, l.n)
  redis.call('ZREM', K.busy, l.n)
  if configured(K, l.n) then
    redis.call('ZADD', K.free, fmt(idle), l.n)
  end
end

local function expire_pool(K, now)
  local due = redis.call('ZRANGEBYSCORE', K.expiry, '-inf', fmt(now))
  for _, visitor in ipairs(due) do
    local l = cjson.decode(redis.call('HGET', K.lease, visitor))
    end_lease(K, l, tonumber(l.e))
  end
  return #due
end

-- Renew: last seen now, expires after the hold time. `now` is the newest time in the pool, so
-- it is also the latest last_seen of the number's holders.
local function touch(K, l, now, hold)
  l.l, l.e = fmt(now), fmt(now + hold)
  redis.call('HSET', K.lease, l.v, cjson.encode(l))
  redis.call('ZADD', K.expiry, l.e, l.v)
  redis.call('ZADD', K.busy, l.l, l.n)
  save_record(l, l.e)
end
