-- enqueue_record: give a job its record when it is sent (state 'queued', or
-- 'scheduled' with its due time), unless the job has a record already.
-- Create-if-absent: a record a worker already made 'running', or a final one,
-- is never overwritten (on Redis Cluster the record and the queue are in
-- different slots, so the sender writes the record first and the message
-- second, in one pipeline; a record written late finds the worker's and stops).
-- The record lets abort() tell a queued job from an id that was never sent.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  task name
-- ARGV[2]  queue
-- ARGV[3]  enqueued at (ms since epoch, the message's own value)
-- ARGV[4]  the job's result_ttl (ms): the record's TTL, plus the wait of a
--          delayed job; kept in field 'result_ttl_ms' for abort()
-- ARGV[5]  the unique lock the job holds ('' for none)
-- ARGV[6]  '' (run now), 'delay' (ARGV[7] ms after Redis' TIME) or 'eta'
--          (at ARGV[7], ms since epoch)
-- ARGV[7]  the delay or the eta (ms)
--
-- Returns: 1 when the record was created, 0 when the job had one.
-- #include clock.lua
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local ttl = tonumber(ARGV[4])
local fields = {'state', 'queued', 'task', ARGV[1], 'queue', ARGV[2],
  'enqueued_ms', ARGV[3], 'result_ttl_ms', ARGV[4]}
if ARGV[6] ~= '' then
  local now = now_ms()
  local due = tonumber(ARGV[7])
  if ARGV[6] == 'delay' then
    due = now + due
  end
  if due > now then
    fields[2] = 'scheduled'
    fields[#fields + 1] = 'due_ms'
    fields[#fields + 1] = string.format('%.0f', due)
    ttl = ttl + due - now
  end
end
if ARGV[5] ~= '' then
  fields[#fields + 1] = 'lock'
  fields[#fields + 1] = ARGV[5]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return 1
