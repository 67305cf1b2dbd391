#!lua flags=no-cluster
-- start_many: start.lua for a whole batch of jobs in one call (single Redis
-- node only: the job keys are in different Cluster slots, so on Cluster the
-- worker sends one start.lua per job instead).
--
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  approximate cap on each event stream's length
-- ARGV[4 + 6(i-1)…]  job record key, task name, queue, enqueued at (ms), its
--          queue's event stream ('' = no event) and job id, of job i
--
-- Returns: one reply per job, as start.lua's: the attempt number (integer)
--          when it should run, or its stored outcome (bytes) when it ended.
-- #include final.lua
-- #include event.lua
-- #include start_job.lua
local replies = {}
for base = 4, #ARGV, 6 do
  local reply = start_job(ARGV[base], ARGV[1], ARGV[2], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3])
  if type(reply) == 'number' then
    emit(ARGV[base + 4], ARGV[3], 'started', ARGV[base + 5], ARGV[base + 1], ARGV[1], reply, '')
  end
  replies[#replies + 1] = reply
end
return replies
