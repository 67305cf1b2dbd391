-- start_job(record, worker, started_ms, task, queue, enqueued_ms): mark a job
-- running for one attempt, unless it already has a final outcome (start.lua and
-- start_many.lua). Every start bumps `attempts` and names the worker: (worker,
-- attempts) is the attempt's fencing token (fence.lua: holds_job). A running
-- job's record has no TTL: it gets one (result_ttl) when the job ends.
-- Returns the attempt number (run it), or the stored outcome (bytes, '' when
-- missing) when the job already ended. Needs final.lua.
local function start_job(record, worker, started_ms, task, queue, enqueued_ms)
  local state = redis.call('HGET', record, 'state')
  if is_final(state) then
    return redis.call('HGET', record, 'outcome') or ''
  end
  local attempt = redis.call('HINCRBY', record, 'attempts', 1)
  redis.call('HSET', record,
    'state', 'running', 'worker', worker, 'started_ms', started_ms,
    'task', task, 'queue', queue, 'enqueued_ms', enqueued_ms)
  redis.call('PERSIST', record)
  return attempt
end
