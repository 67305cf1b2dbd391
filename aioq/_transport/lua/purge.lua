-- purge: drop entries of a level stream that no consumer has taken yet (after
-- the group's last-delivered id), oldest first. Entries delivered to a worker
-- (running, pending) are never touched.
--
-- KEYS[1]  level stream
-- ARGV[1]  consumer group
-- ARGV[2]  highest entry id to drop (the stream's last id when the purge began)
-- ARGV[3]  most entries to drop in this call
--
-- Returns: the payloads (field m, '' when missing) of the dropped entries.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
local last = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, delivered = nil, nil
  for i = 1, #group, 2 do
    if group[i] == 'name' then
      name = group[i + 1]
    elseif group[i] == 'last-delivered-id' then
      delivered = group[i + 1]
    end
  end
  if name == ARGV[1] and delivered then
    last = delivered
  end
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. last, ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = {}
for i, entry in ipairs(entries) do
  local payload = ''
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'm' then
      payload = fields[j + 1]
    end
  end
  out[i] = payload
  redis.call('XDEL', KEYS[1], entry[1])
end
return out
