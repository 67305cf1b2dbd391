-- pending: the pending-entry summaries of many level streams in one call, for the
-- recovery scan of a worker on many queues (``Recovery._candidate_queues``). One
-- script instead of one XPENDING per stream: the worker parses only the streams
-- that hold something, not a reply (or a "no such key" error) per stream.
--
-- KEYS     level streams (on a cluster, of one slot)
-- ARGV[1]  consumer group
--
-- Returns: per stream with pending entries: key index, number of consumers c,
-- then c times (consumer name, its pending count). Streams that do not exist,
-- have no group or hold nothing pending are left out.
local group = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local r = redis.pcall('XPENDING', key, group)
    if type(r) == 'table' and not r.err and tonumber(r[1]) > 0 then
      local consumers = r[4] or {}
      out[#out + 1] = i
      out[#out + 1] = #consumers
      for _, c in ipairs(consumers) do
        out[#out + 1] = c[1]
        out[#out + 1] = c[2]
      end
    end
  end
end
return out
