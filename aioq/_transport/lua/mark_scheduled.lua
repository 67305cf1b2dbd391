-- mark_scheduled: give a delayed unique job its 'scheduled' record, unless the
-- job has a record already (it was sent after the lock was taken, so it may
-- have started: its state must not go back to 'scheduled').
--
-- KEYS[1]  job record
-- ARGV[1]  task, ARGV[2] queue, ARGV[3] due ms, ARGV[4] TTL (ms)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'scheduled', 'task', ARGV[1], 'queue', ARGV[2],
  'due_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
