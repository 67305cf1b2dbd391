#!lua
-- mark: a failed attempt will be retried: set the record to 'retrying' with the
-- last error and when it is due, fenced by the attempt's token, unless the job
-- already ended.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  attempt
-- ARGV[3]  last error (msgpack ErrorInfo)
-- ARGV[4]  delay (ms) until the next attempt, from now (Redis clock)
-- ARGV[5]  result TTL (ms): the record expires this long after the next
--          attempt is due, if nothing starts it
--
-- Returns: WROTE_WRITTEN when set; WROTE_FINAL when the job already ended;
--          WROTE_FENCED (a later attempt holds the job).
-- #include codes.lua
-- #include final.lua
-- #include fence.lua
-- #include clock.lua
local state, held = holds_job(KEYS[1], ARGV[1], ARGV[2])
if is_final(state) then
  return WROTE_FINAL
end
if not held then
  return WROTE_FENCED
end
local delay = tonumber(ARGV[4])
local due = now_ms() + delay
redis.call('HSET', KEYS[1], 'state', 'retrying', 'error', ARGV[3],
  'due_ms', string.format('%.0f', due))
redis.call('PEXPIRE', KEYS[1], delay + tonumber(ARGV[5]))
return WROTE_WRITTEN
