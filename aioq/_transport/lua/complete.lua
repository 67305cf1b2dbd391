#!lua flags=no-cluster
-- complete: the completer's whole batch in one call on a single Redis node:
-- for each finished attempt, its outcome (fenced by the attempt's token, first
-- writer wins, published), its unique lock released, and only then its entry
-- acked (fenced by the delivery). Refused as a whole when Redis is out of
-- memory (the shebang): an ack can never land without its outcome.
-- On Cluster the record and the queue are in different slots: the worker sends
-- finish.lua, then ack.lua for what it confirmed, instead.
--
-- ARGV[1]  consumer group
-- ARGV[2]  worker id (its consumer name)
-- ARGV[3]  approximate cap on each event stream's length ('0': events are off)
-- ARGV[4…]  per item, 13 values: stream, entry id, deliveries, job record key
--          ('' for a bare ack), job id, attempt, final state, outcome, finished
--          at (ms), record TTL (ms), notify channel, unique lock key ('' for
--          none), lock keep (ms; 0 = delete); when events are on, 3 more: its
--          lifecycle event: the queue's event stream ('' = none), task, detail:
--          the event (kind: the final state) is written with an outcome this call
--          wrote, only. (Each argument costs Redis ~0.2 us: none is sent in vain.)
--
-- Returns: per item two values, write then ack. write: WROTE_NOTHING (a bare
--          ack), WROTE_WRITTEN, WROTE_FINAL (the job had already ended),
--          WROTE_FENCED (a later attempt holds the job: nothing written, nothing
--          acked). ack: 1 acked, 0 not (another consumer holds the entry now).
-- #include codes.lua
-- #include final.lua
-- #include fence.lua
-- #include notify.lua
-- #include finish_job.lua
-- #include unlock.lua
-- #include event.lua
local group, worker = ARGV[1], ARGV[2]
local events = ARGV[3] ~= '0'
local width = events and 16 or 13
local out = {}
local acks = ack_batch()
for b = 4, #ARGV, width do
  ack_plan(acks, ARGV[b], ARGV[b + 1])
end
for b = 4, #ARGV, width do
  local stream, id, deliveries, record = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local wrote = WROTE_NOTHING
  if record ~= '' then
    wrote = finish_job(record, worker, ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8],
      ARGV[b + 9], ARGV[b + 10])
    local lock = ARGV[b + 11]
    if wrote ~= WROTE_FENCED and lock ~= '' then
      unlock(lock, ARGV[b + 4], ARGV[b + 12])
    end
  end
  local acked = 0
  if wrote ~= WROTE_FENCED then
    acked = ack_entry(acks, stream, group, id, worker, deliveries)
  end
  if events and wrote == WROTE_WRITTEN then
    emit(ARGV[b + 13], ARGV[3], ARGV[b + 6], ARGV[b + 4], ARGV[b + 14], worker, ARGV[b + 5],
      ARGV[b + 15])
  end
  out[#out + 1] = wrote
  out[#out + 1] = acked
end
ack_flush(acks, group)
return out
