#!lua
-- progress: store a running attempt's progress report in its job's record and
-- publish it to watchers — fenced by the attempt's token, and only while the
-- job is not final, so a report can never recreate an expired or ended record.
--
-- KEYS[1]  job record (hash)
-- ARGV[1]  worker id
-- ARGV[2]  attempt
-- ARGV[3]  the report (msgpack Progress)
-- ARGV[4]  progress channel
--
-- Returns: 1 when stored and published; 0 when not (the job ended, its record
--          is gone, or a later attempt holds it).
-- #include codes.lua
-- #include final.lua
-- #include fence.lua
local state, held = holds_job(KEYS[1], ARGV[1], ARGV[2])
if not state or is_final(state) or not held then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1
