-- forget_consumers: delete consumers that hold nothing from a queue's groups.
-- Only a clean exit removes a worker's consumer; a killed worker's stays for
-- ever unless someone removes it. XGROUP DELCONSUMER drops the consumer's
-- pending entries with it, so the pending count is checked in the same script:
-- a consumer that still holds a message is never deleted (its entries are
-- recovered first, then it goes). A live worker whose consumer is removed
-- while it holds nothing gets it back with its next read.
--
-- KEYS     level streams
-- ARGV[1]  consumer group
-- ARGV[2]  min idle time (ms) of a consumer to delete
-- ARGV[3]  consumer to keep (this worker), or ''
-- ARGV[4]  the only consumer to look at, or '' for all
--
-- Returns: the names of the consumers deleted (once per stream).
local group, keep, only = ARGV[1], ARGV[3], ARGV[4]
local idle = tonumber(ARGV[2])
local removed = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local consumers = redis.pcall('XINFO', 'CONSUMERS', key, group)
    if not consumers.err then
      for _, c in ipairs(consumers) do
        local f = {}
        for j = 1, #c, 2 do
          f[c[j]] = c[j + 1]
        end
        if f['name'] ~= keep and (only == '' or f['name'] == only)
            and f['pending'] == 0 and f['idle'] >= idle then
          redis.call('XGROUP', 'DELCONSUMER', key, group, f['name'])
          removed[#removed + 1] = f['name']
        end
      end
    end
  end
end
return removed
