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
-- #include codes.lua
-- #include fence.lua
local out = {}
local acks = ack_batch()
for i = 3, #ARGV, 2 do
  ack_plan(acks, KEYS[1], ARGV[i])
end
for i = 3, #ARGV, 2 do
  out[#out + 1] = ack_entry(acks, KEYS[1], ARGV[1], ARGV[i], ARGV[2], ARGV[i + 1])
end
ack_flush(acks, ARGV[1])
return out
