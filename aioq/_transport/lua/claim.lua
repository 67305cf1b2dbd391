-- claim: take over messages of one queue whose lease lapsed (their worker
-- died or stalled), most urgent level first, at most COUNT in all.
--
-- KEYS     the queue's level streams
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  min idle time (ms)
-- ARGV[4]  most messages to take
-- ARGV[5..]  XAUTOCLAIM cursor of each stream (follow them: a call scans a
--            bounded part of each pending list)
--
-- Returns: {cursor per key..., deleted count, then per claimed entry:
--           key index, entry id, fields, times delivered}
local group, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local left = tonumber(ARGV[4])
local cursors, claimed = {}, {}
local deleted = 0
for i, key in ipairs(KEYS) do
  cursors[i] = ARGV[4 + i]
  if left > 0 and redis.call('EXISTS', key) == 1 then
    local r = redis.pcall('XAUTOCLAIM', key, group, consumer, idle, cursors[i], 'COUNT', left)
    if not r.err then
      cursors[i] = r[1]
      for _, entry in ipairs(r[2]) do
        local p = redis.call('XPENDING', key, group, entry[1], entry[1], 1)
        claimed[#claimed + 1] = i
        claimed[#claimed + 1] = entry[1]
        claimed[#claimed + 1] = entry[2]
        claimed[#claimed + 1] = p[1] and p[1][4] or 1
        left = left - 1
      end
      if r[3] then
        deleted = deleted + #r[3]
      end
    end
  end
end
local out = cursors
out[#out + 1] = deleted
for _, v in ipairs(claimed) do
  out[#out + 1] = v
end
return out
