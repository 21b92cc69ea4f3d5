-- history(prefix, number, since, until) -> record jsons that may overlap; the caller filters
local number, since = ARGV[2], tonumber(ARGV[3])
local span = tonumber(redis.call('HGET', key(KIND.spans), number)) or 0
local records = key(KIND.record, number)
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key(KIND.history, number), fmt(since - span), ARGV[4])) do
  local json = redis.call('HGET', records, id)
  if json then
    found[#found + 1] = json
  end
end
return found
