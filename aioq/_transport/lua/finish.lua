-- finish: record a job's final outcome (first writer wins) and publish it.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  final state ('succeeded' | 'failed' | 'aborted')
-- ARGV[2]  outcome (msgpack Outcome)
-- ARGV[3]  finished at (ms since epoch)
-- ARGV[4]  record TTL (ms)
-- ARGV[5]  notify channel
--
-- Returns: 1 when this call wrote the outcome, 0 when another writer already
--          had (a redelivered duplicate): nothing is changed or published then.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'aborted' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'outcome', ARGV[2], 'finished_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
