-- abort: end a job as 'aborted' unless it already ended, wake its waiters
-- (notify.lua),
-- and tell the workers (one of them may be running it). An id with no record
-- (never sent, or expired) is left alone: nothing is written, so a job sent
-- under that id later still runs.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  outcome (msgpack Outcome with state 'aborted')
-- ARGV[2]  now (ms since epoch)
-- ARGV[3]  record TTL (ms) when the record does not carry the job's own
--          ('result_ttl_ms', written when it was sent)
-- ARGV[4]  the job's notify channel
-- ARGV[5]  the workers' abort channel
-- ARGV[6]  job id
--
-- Returns: {ABORT_NO_RECORD} when there is no record; {ABORT_ENDED} when the job
--          had already ended; {ABORT_ABORTED, task, queue, lock, result_ttl_ms,
--          worker, attempts} when aborted (the fields as the record has them,
--          false when missing): the caller releases the unique lock, corrects
--          the TTL and writes the 'aborted' event (in the queue's slot) with them.
-- #include codes.lua
-- #include final.lua
-- #include notify.lua
local got = redis.call('HMGET', KEYS[1], 'state', 'task', 'queue', 'lock', 'result_ttl_ms',
  'worker', 'attempts', 'reply')
local state = got[1]
if not state and redis.call('EXISTS', KEYS[1]) == 0 then
  return {ABORT_NO_RECORD}
end
if is_final(state) then
  return {ABORT_ENDED}
end
redis.call('HSET', KEYS[1], 'state', 'aborted', 'outcome', ARGV[1], 'finished_ms', ARGV[2])
redis.call('PEXPIRE', KEYS[1], got[5] or ARGV[3])
notify(KEYS[1], got[8], ARGV[4], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {ABORT_ABORTED, got[2], got[3], got[4], got[5], got[6], got[7]}
