-- unlock: a unique job ended; let the next call with its key be sent.
--
-- KEYS[1]  the lock
-- ARGV[1]  job id that must hold it (another job's lock is left alone)
-- ARGV[2]  0: delete it (unique_for); n > 0: keep it n ms more (an explicit
--          job id stays taken while its result is kept)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
