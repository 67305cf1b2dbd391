-- unlock(lock, job_id, keep_ms): a unique job ended; let the next call with its
-- key be sent. Only a lock that still names this job is touched. keep_ms '0'
-- deletes it (unique_for); n > 0 keeps it n ms more (an explicit job id stays
-- taken while its result is kept). Returns 1 when it named this job.
local function unlock(lock, job_id, keep_ms)
  if redis.call('GET', lock) ~= job_id then
    return 0
  end
  if keep_ms == '0' then
    redis.call('DEL', lock)
  else
    redis.call('PEXPIRE', lock, keep_ms)
  end
  return 1
end
