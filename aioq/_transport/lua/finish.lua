#!lua
-- finish: record a job's final outcome for one attempt, fenced, and publish it.
-- Refused as a whole when Redis is out of memory (the shebang), never half done.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  attempt ('0': a write on the message's behalf with no running
--          attempt, e.g. a dead letter's failure: any non-final job)
-- ARGV[3]  final state ('succeeded' | 'failed' | 'aborted')
-- ARGV[4]  outcome (msgpack Outcome)
-- ARGV[5]  finished at (ms since epoch)
-- ARGV[6]  record TTL (ms), counted from now
-- ARGV[7]  notify channel
--
-- Returns: {1} written and published; {2, stored outcome} the job had already
--          ended (first writer wins: nothing changed); {3} fenced: a later
--          attempt holds the job, nothing written.
-- #include final.lua
-- #include fence.lua
local state, held = holds_job(KEYS[1], ARGV[1], ARGV[2])
if is_final(state) then
  return {2, redis.call('HGET', KEYS[1], 'outcome') or ''}
end
if not held then
  return {3}
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'outcome', ARGV[4], 'finished_ms', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[4])
return {1}
