-- enqueue_unique: send a job unless a job holding the same uniqueness lock is
-- still pending (an explicit job id, or a task with equal arguments under
-- unique_for). Atomic, so concurrent senders create exactly one job.
--
-- KEYS[1]  the lock (in the queue's slot)
-- KEYS[2]  the queue's stream (ARGV[4] empty) or delayed set (ARGV[4] = due ms)
-- ARGV[1]  job id of this call
-- ARGV[2]  lock TTL (ms)
-- ARGV[3]  payload
-- ARGV[4]  due time (ms since epoch) for a delayed call, or ''
--
-- Returns: {1, job id} when sent; {0, job id of the job holding the lock} when not.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[4] == '' then
    redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
  else
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  end
  return {1, ARGV[1]}
end
return {0, redis.call('GET', KEYS[1])}
