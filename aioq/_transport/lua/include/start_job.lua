-- start_job(record, worker, started_ms, task, queue, enqueued_ms): mark a job
-- running for one attempt, unless it already has a final outcome (start.lua and
-- start_many.lua). Every start bumps `attempts` and names the worker: (worker,
-- attempts) is the attempt's fencing token (fence.lua: holds_job). A running
-- job's record has no TTL: it gets one (result_ttl) when the job ends.
-- One HMGET reads the state, the attempts and whether the record names its task
-- (every record a send writes does; one Redis lost, or one a stray write made,
-- is written whole): a start costs HMGET + HSET + PERSIST, not the four calls
-- of HGET + HINCRBY + HSET of every field + PERSIST (~1.5 us of Redis CPU each).
-- Returns the attempt number (run it), or the stored outcome (bytes, '' when
-- missing) when the job already ended. Needs final.lua.
local function start_job(record, worker, started_ms, task, queue, enqueued_ms)
  local r = redis.call('HMGET', record, 'state', 'attempts', 'task')
  if is_final(r[1]) then
    return redis.call('HGET', record, 'outcome') or ''
  end
  local attempt = (tonumber(r[2]) or 0) + 1
  if r[3] then
    redis.call('HSET', record,
      'state', 'running', 'worker', worker, 'started_ms', started_ms, 'attempts', attempt)
  else
    redis.call('HSET', record,
      'state', 'running', 'worker', worker, 'started_ms', started_ms, 'attempts', attempt,
      'task', task, 'queue', queue, 'enqueued_ms', enqueued_ms)
  end
  redis.call('PERSIST', record)
  return attempt
end
