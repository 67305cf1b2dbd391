-- enqueue_unique: send a job unless a job holding the same uniqueness lock is
-- still pending (an explicit job id, or a task with equal arguments under
-- unique_for). Atomic, so concurrent senders create exactly one job.
-- A delayed call's due time comes from Redis' clock (TIME), not the sender's.
--
-- KEYS[1]  the lock (in the queue's slot)
-- KEYS[2]  the level stream
-- KEYS[3]  the matching delayed set
-- ARGV[1]  job id of this call
-- ARGV[2]  how long the lock holds once the job is due (ms); a delayed job's
--          wait is added
-- ARGV[3]  payload
-- ARGV[4]  '' (run now), 'delay' (ARGV[5] ms after TIME) or 'eta' (at ARGV[5],
--          ms since epoch)
-- ARGV[5]  the delay or the eta (ms)
--
-- Returns: {1, job id} when sent; {0, job id of the job holding the lock} when not.
-- #include clock.lua
local due = nil
local hold = tonumber(ARGV[2])
if ARGV[4] ~= '' then
  local now = now_ms()
  due = tonumber(ARGV[5])
  if ARGV[4] == 'delay' then
    due = now + due
  end
  if due > now then
    hold = hold + due - now
  else
    due = nil
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', string.format('%.0f', math.max(1, hold))) then
  if due == nil then
    redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
  else
    redis.call('ZADD', KEYS[3], string.format('%.0f', due), ARGV[3])
  end
  return {1, ARGV[1]}
end
return {0, redis.call('GET', KEYS[1])}
