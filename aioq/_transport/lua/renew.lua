-- renew: reset the idle time of entries this consumer still owns (the lease),
-- without touching their delivery count. An entry another consumer took over
-- (after this worker stalled past the visibility timeout) is not taken back.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3…] entry ids
--
-- Returns: the ids this consumer no longer owns. When the group itself is gone
-- (Redis lost its data) nobody else can own them: nothing is reported lost, so
-- running tasks finish and record their outcome.
local lost = {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p.err then
    return {}
  end
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
