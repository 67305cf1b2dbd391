#!lua flags=allow-oom
-- ack: acknowledge and delete entries this consumer still holds, so the stream
-- only holds live work. Fenced per entry: an entry another consumer took over
-- (or that was redelivered since) is left alone. Allowed when Redis is out of
-- memory: it only frees memory.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3…] entry id, deliveries, entry id, deliveries, …
--
-- Returns: per entry, 1 when acknowledged (or the group is gone because Redis
--          lost its data: nothing left to acknowledge), 0 when not held.
-- #include fence.lua
local out = {}
for i = 3, #ARGV, 2 do
  local held = holds_entry(KEYS[1], ARGV[1], ARGV[i], ARGV[2], ARGV[i + 1])
  if held == 1 then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  end
  if held ~= 0 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
