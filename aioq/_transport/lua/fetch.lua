-- fetch: read up to COUNT new messages for one worker, most urgent first.
--
-- Each queue has one stream per priority level (0..9). The worker passes the
-- level streams of all its queues, grouped by queue (queue order rotated by
-- the worker for fairness), each group most urgent first. Levels are read
-- from the top down, and within a level the queues in the order given; so a
-- ready message of a higher level is always taken before a lower one, except
-- on reads the worker marks "ascending" (one in ten), which go bottom-up so
-- that lower levels keep moving under a steady flow of urgent work.
--
-- A level stream is created by the first message sent to it; its consumer
-- group is created here on first sight, from 0 (nothing sent before is missed).
--
-- KEYS     LEVELS streams per queue
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  most messages to take
-- ARGV[4]  1: ascending (lowest level first), 0: most urgent first
-- ARGV[5]  LEVELS (streams per queue)
--
-- Returns: {1, key index, entry id, fields, key index, entry id, fields, ...}
--          when something was read; otherwise {0, id 1, id 2, ...}: per key, the
--          id after which a new message would appear (for an XREAD that waits),
--          or '' for a stream that does not exist yet.
local group, consumer = ARGV[1], ARGV[2]
local left = tonumber(ARGV[3])
local ascending = ARGV[4] == '1'
local levels = tonumber(ARGV[5])
local queues = #KEYS / levels
local out = {1}

local function read(i)
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 0 then
    return
  end
  local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', key, '>')
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'NOGROUP') then
      return redis.error_reply(r.err)
    end
    redis.pcall('XGROUP', 'CREATE', key, group, '0')
    r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', key, '>')
  end
  if r then
    for _, entry in ipairs(r[1][2]) do
      out[#out + 1] = i
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2]
      left = left - 1
    end
  end
end

for step = 0, levels - 1 do
  local l = ascending and (levels - 1 - step) or step
  for q = 0, queues - 1 do
    if left <= 0 then
      return out
    end
    local err = read(q * levels + l + 1)
    if err then
      return err
    end
  end
end
if #out > 1 then
  return out
end

-- Nothing to read: where would the next message of each stream appear?
local wait = {0}
for i, key in ipairs(KEYS) do
  local id = ''
  if redis.call('EXISTS', key) == 1 then
    id = '0-0'
    local groups = redis.pcall('XINFO', 'GROUPS', key)
    if type(groups) == 'table' and not groups.err then
      for _, g in ipairs(groups) do
        for f = 1, #g, 2 do
          if g[f] == 'name' and g[f + 1] == group then
            for h = 1, #g, 2 do
              if g[h] == 'last-delivered-id' then
                id = g[h + 1]
              end
            end
          end
        end
      end
    end
  end
  wait[#wait + 1] = id
end
return wait
