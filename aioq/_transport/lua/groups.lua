-- groups: a worker's start, for many queues in one call: create each queue's
-- consumer group on its level-0 stream, from 0 (MKSTREAM: messages sent before
-- any worker existed are read), and say which of the other level streams exist
-- (those get their group from fetch.lua on first sight). One call instead of one
-- XGROUP CREATE per queue; and a worker of many queues knows which level streams
-- are missing before its first fetch, instead of looking at every one of them.
--
-- KEYS     ARGV[2] level-0 streams (one per queue), then other level streams
-- ARGV[1]  consumer group
-- ARGV[2]  how many level-0 streams lead KEYS
--
-- Returns: the indices (into KEYS) of the other level streams that exist; an
-- error reply (other than BUSYGROUP: the group is there) as it came.
local group, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local r = redis.pcall('XGROUP', 'CREATE', KEYS[i], group, '0', 'MKSTREAM')
  if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP') then
    return redis.error_reply(r.err)
  end
end
local out = {}
for i = n + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = i
  end
end
return out
