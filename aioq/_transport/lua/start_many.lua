-- start_many: start.lua for a whole batch of jobs in one call (single Redis
-- node: the job keys are in different Cluster slots, so on Cluster the worker
-- sends one start.lua per job instead).
--
-- KEYS[i]  job record of job i
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  record TTL (ms) while running
-- ARGV[4 + 3(i-1)…]  task name, queue, enqueued at (ms) of job i
--
-- Returns: one reply per job, as start.lua's: the attempt number (integer)
--          when it should run, or its stored outcome (bytes) when it ended.
local replies = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HGET', key, 'state')
  if state == 'succeeded' or state == 'failed' or state == 'aborted' then
    replies[i] = redis.call('HGET', key, 'outcome') or ''
  else
    local base = 4 + 3 * (i - 1)
    replies[i] = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'running', 'worker', ARGV[1], 'started_ms', ARGV[2],
      'task', ARGV[base], 'queue', ARGV[base + 1], 'enqueued_ms', ARGV[base + 2])
    redis.call('PEXPIRE', key, ARGV[3])
  end
end
return replies
