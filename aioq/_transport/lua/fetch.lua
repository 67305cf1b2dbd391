-- fetch: read up to COUNT new messages for one worker, most urgent first.
--
-- KEYS are level streams of the worker's queues, in the order the worker wants
-- equally urgent streams read (it rotates its queues for fairness); ARGV[5..]
-- gives each key's priority level. Levels are read from the top down, and
-- within a level the keys in the order given; so a ready message of a higher
-- level is always taken before a lower one, except on reads the worker marks
-- "ascending" (one in ten), which go bottom-up so that lower levels keep moving
-- under a steady flow of urgent work.
--
-- A level stream is created by the first message sent to it; its consumer
-- group is created here on first sight, from 0 (nothing sent before is missed).
--
-- KEYS     level streams
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  most messages to take
-- ARGV[4]  1: ascending (lowest level first), 0: most urgent first
-- ARGV[5..] the priority level of each key
--
-- Returns: {m, m times (key index, mark), then per entry read: key index, entry
-- id, fields}. A mark is given for every key looked at that has nothing new
-- left: the id after which its next message will appear (its last entry's id,
-- '0-0' when empty: every entry in it was delivered, so an XREAD from there
-- wakes on the next one only; for a key read short of the count, the last id
-- read), or '' for a stream that does not exist yet. Keys not looked at (COUNT
-- reached first) get no mark.
local group, consumer = ARGV[1], ARGV[2]
local left = tonumber(ARGV[3])
local ascending = ARGV[4] == '1'
local order, level, sorted = {}, {}, true
for i = 1, #KEYS do
  order[i] = i
  level[i] = tonumber(ARGV[4 + i])
  if i > 1 and level[i] ~= level[i - 1] and (level[i] < level[i - 1]) == ascending then
    sorted = false
  end
end
-- The worker of many queues sends its keys in this order already: no sort then.
if not sorted then
  table.sort(order, function(a, b)
    local la, lb = level[a], level[b]
    if la ~= lb then
      if ascending then
        return la < lb
      end
      return la > lb
    end
    return a < b
  end)
end

local marks, out = {}, {}

local function read(i)
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 0 then
    marks[#marks + 1] = i
    marks[#marks + 1] = ''
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
    local wanted, last = left, nil
    for _, entry in ipairs(r[1][2]) do
      out[#out + 1] = i
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2]
      left = left - 1
      last = entry[1]
    end
    if wanted - left < wanted and last then
      -- Read short of COUNT: nothing new is left, the next entry follows the last.
      marks[#marks + 1] = i
      marks[#marks + 1] = last
    end
  else
    local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    marks[#marks + 1] = i
    marks[#marks + 1] = last[1] and last[1][1] or '0-0'
  end
end

for _, i in ipairs(order) do
  if left <= 0 then
    break
  end
  local err = read(i)
  if err then
    return err
  end
end

local reply = {#marks / 2}
for _, v in ipairs(marks) do
  reply[#reply + 1] = v
end
for _, v in ipairs(out) do
  reply[#reply + 1] = v
end
return reply
