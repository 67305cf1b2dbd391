-- unlock: a unique job ended; let the next call with its key be sent.
--
-- KEYS[1]  the lock
-- ARGV[1]  job id that must hold it (another job's lock is left alone)
-- ARGV[2]  0: delete it (unique_for); n > 0: keep it n ms more (an explicit
--          job id stays taken while its result is kept)
--
-- Returns: 1 when the lock named this job, else 0.
-- #include unlock.lua
return unlock(KEYS[1], ARGV[1], ARGV[2])
