-- abort: end a job as 'aborted' unless it already ended, wake its waiters,
-- and tell the workers (one of them may be running it).
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  outcome (msgpack Outcome with state 'aborted')
-- ARGV[2]  now (ms since epoch)
-- ARGV[3]  record TTL (ms)
-- ARGV[4]  the job's notify channel
-- ARGV[5]  the workers' abort channel
-- ARGV[6]  job id
--
-- Returns: 1 when aborted, 0 when the job had already ended.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'aborted' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'aborted', 'outcome', ARGV[1], 'finished_ms', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
