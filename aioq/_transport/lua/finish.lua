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
-- Returns: {WROTE_WRITTEN} written and published; {WROTE_FINAL, stored
--          outcome} the job had already ended (first writer wins: nothing
--          changed); {WROTE_FENCED}: a later attempt holds the job, nothing written.
-- #include codes.lua
-- #include final.lua
-- #include fence.lua
-- #include finish_job.lua
local wrote = finish_job(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if wrote == WROTE_FINAL then
  return {wrote, redis.call('HGET', KEYS[1], 'outcome') or ''}
end
return {wrote}
