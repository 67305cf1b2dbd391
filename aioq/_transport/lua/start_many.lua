#!lua flags=no-cluster
-- start_many: start.lua for a whole batch of jobs in one call (single Redis
-- node only: the job keys are in different Cluster slots, so on Cluster the
-- worker sends one start.lua per job instead).
--
-- ARGV[1]  worker id
-- ARGV[2]  started at (ms since epoch)
-- ARGV[3]  approximate cap on each event stream's length ('0': events are off)
-- ARGV[4…]  per job: job record key, task name, queue, enqueued at (ms), and
--          when events are on, its queue's event stream ('' = no event) and job id
--
-- Returns: one reply per job, as start.lua's: the attempt number (integer)
--          when it should run, or its stored outcome (bytes) when it ended.
-- #include final.lua
-- #include event.lua
-- #include start_job.lua
local events = ARGV[3] ~= '0'
local replies = {}
for base = 4, #ARGV, events and 6 or 4 do
  local reply = start_job(ARGV[base], ARGV[1], ARGV[2], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3])
  if events and type(reply) == 'number' then
    emit(ARGV[base + 4], ARGV[3], 'started', ARGV[base + 5], ARGV[base + 1], ARGV[1], reply, '')
  end
  replies[#replies + 1] = reply
end
return replies
