-- renew: reset the idle time of entries this consumer still owns (the lease),
-- without touching their delivery count. An entry another consumer took over
-- (after this worker stalled past the visibility timeout) is not taken back.
--
-- KEYS[1]  level stream
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3…] entry ids
--
-- Returns: {taken, gone}: the ids another consumer owns now (a takeover), and
-- the ids no longer pending at all (acked, usually by this worker's own
-- completer a moment ago, or deleted). When the group itself is gone (Redis
-- lost its data) nobody else can own them: nothing is reported, so running
-- tasks finish and record their outcome.
local taken, gone = {}, {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p.err then
    return {{}, {}}
  end
  if not p[1] then
    gone[#gone + 1] = ARGV[i]
  elseif p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    taken[#taken + 1] = ARGV[i]
  end
end
return {taken, gone}
