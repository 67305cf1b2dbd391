#!lua
-- start: mark a job running for one attempt, unless it already has a final outcome.
-- Every start bumps `attempts` and names the worker: (worker, attempts) is the
-- attempt's fencing token, which every later write for this attempt checks
-- (fence.lua: holds_job), so a worker that stalled past its lease can never
-- overwrite the record of an attempt started after it.
-- A running job's record has no TTL: it never expires while the job lives; it
-- gets one (result_ttl) when the job ends.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  task name
-- ARGV[4]  queue
-- ARGV[5]  enqueued at (ms since epoch)
--
-- Returns: the attempt number when the job was marked running and should run;
--          the stored outcome (bytes) when the job already ended, so the caller
--          only acks the redelivered message.
-- #include final.lua
local state = redis.call('HGET', KEYS[1], 'state')
if is_final(state) then
  return redis.call('HGET', KEYS[1], 'outcome') or ''
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1],
  'state', 'running', 'worker', ARGV[1], 'started_ms', ARGV[2],
  'task', ARGV[3], 'queue', ARGV[4], 'enqueued_ms', ARGV[5])
redis.call('PERSIST', KEYS[1])
return attempt
