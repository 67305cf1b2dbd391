#!lua
-- event: append one lifecycle event to a queue's event stream, for transitions
-- whose own script cannot (it writes a job record, in another Cluster slot): a
-- progress report, an abort, a start on the per-job (Cluster) path. With
-- KEYS[2] it is fenced by the delivery, in the queue's slot: written only
-- while this consumer still holds the entry with that delivery count.
--
-- KEYS[1]  the queue's event stream
-- KEYS[2]  (optional) the level stream of the entry to fence by
-- ARGV[1]  approximate cap on the event stream's length
-- ARGV[2]  kind ('started', 'progress', 'aborted', …)
-- ARGV[3]  job id
-- ARGV[4]  task name
-- ARGV[5]  worker id ('' for none)
-- ARGV[6]  attempt (0: none)
-- ARGV[7]  detail (text, may be '')
-- ARGV[8]  consumer group      } with KEYS[2] only
-- ARGV[9]  entry id            }
-- ARGV[10] its delivery count  }
--
-- Returns: 1 when written; 0 when fenced (this consumer no longer holds it).
-- #include codes.lua
-- #include fence.lua
-- #include event.lua
if KEYS[2] and holds_entry(KEYS[2], ARGV[8], ARGV[9], ARGV[5], ARGV[10]) == HELD_NOT_HELD then
  return 0
end
emit(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
