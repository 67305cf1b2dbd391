-- mark: set a job's interim state (e.g. 'retrying'), unless it already ended.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  state
-- ARGV[2]  record TTL (ms)
-- ARGV[3…] more field, value pairs to set
--
-- Returns: 1 when set, 0 when the job already has a final state.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'aborted' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
