-- finish_many: finish.lua for a whole batch of jobs in one call (single Redis
-- node only, like start_many).
--
-- KEYS[i]  job record of job i
-- ARGV[5(i-1) + 1…5]  final state, outcome, finished at (ms), record TTL (ms),
--                     notify channel of job i
--
-- Returns: how many outcomes this call wrote (the others had one already).
local written = 0
for i, key in ipairs(KEYS) do
  local base = 5 * (i - 1)
  local state = redis.call('HGET', key, 'state')
  if not (state == 'succeeded' or state == 'failed' or state == 'aborted') then
    redis.call('HSET', key, 'state', ARGV[base + 1], 'outcome', ARGV[base + 2],
      'finished_ms', ARGV[base + 3])
    redis.call('PEXPIRE', key, ARGV[base + 4])
    redis.call('PUBLISH', ARGV[base + 5], ARGV[base + 2])
    written = written + 1
  end
end
return written
