#!lua
-- start: mark a job running for one attempt, unless it already has a final
-- outcome (include/start_job.lua: start_job). (worker, attempts) becomes the
-- attempt's fencing token, so a worker that stalled past its lease can never
-- overwrite the record of an attempt started after it.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  task name
-- ARGV[4]  queue
-- ARGV[5]  enqueued at (ms since epoch)
--
-- Returns: the attempt number when the job was marked running and should run;
--          the stored outcome (bytes) when the job already ended, so the caller
--          only acks the redelivered message.
-- #include final.lua
-- #include start_job.lua
return start_job(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
