-- enqueue_once: add a workflow's follow-up message to its queue at most once.
-- Follow-ups have deterministic job ids, and every worker that sees the step
-- finish (a redelivery after a crash included) tries to send them: the marker
-- makes all but the first try a no-op.
--
-- KEYS[1]  queue stream
-- KEYS[2]  marker for this job id (in the queue's slot)
-- ARGV[1]  payload
-- ARGV[2]  marker TTL (ms)
--
-- Returns: 1 when added, 0 when it had been added before.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
  return 1
end
return 0
