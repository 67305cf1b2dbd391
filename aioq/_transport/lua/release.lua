-- release: hand entries this consumer still holds back at once, marking them
-- idle for `idle` ms so the next recovery pass takes them (shutdown, or a start
-- that failed). Fenced: an entry another consumer took over meanwhile is left
-- alone (a plain XCLAIM would steal it back from the worker running it).
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3]  idle time to set (ms)
-- ARGV[4…] entry ids
--
-- Returns: how many entries were handed back.
local n = 0
for i = 4, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if not p.err and p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
