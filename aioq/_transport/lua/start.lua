-- start: mark a job running, unless it already has a final outcome.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  task name
-- ARGV[4]  queue
-- ARGV[5]  enqueued at (ms since epoch)
-- ARGV[6]  record TTL (ms) while running
--
-- Returns: the attempt number (an integer counting every start, redeliveries
--          after a crash included) when the job was marked running and should run;
--          the stored outcome (bytes) when the job already finished, so the
--          caller acks the redelivered message without running it again.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'aborted' then
  return redis.call('HGET', KEYS[1], 'outcome') or ''
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1],
  'state', 'running', 'worker', ARGV[1], 'started_ms', ARGV[2],
  'task', ARGV[3], 'queue', ARGV[4], 'enqueued_ms', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return attempt
