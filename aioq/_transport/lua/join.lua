-- join: record one group member's result; when every member is in, return all
-- results in member order. Counted by member index in a hash (HSETNX), so a
-- redelivered or retried member never counts twice; every call that finds the
-- group complete returns the results, and the follow-up it sends is deduplicated
-- by enqueue_once, so the callback runs exactly once.
--
-- The barrier has no TTL while members are outstanding, however far apart they
-- finish: it lives as long as its workflow. It gets one (the result TTL) when
-- the group is complete, or when the workflow ends early (a member failed or
-- was aborted: end_group.lua, which also closes it: a closed barrier counts
-- nobody and never fires).
--
-- KEYS[1]  the group's barrier (hash: member index -> msgpack result)
-- ARGV[1]  member index
-- ARGV[2]  the member's result (msgpack)
-- ARGV[3]  group size
-- ARGV[4]  barrier TTL (ms) once complete
--
-- Returns: the list of results when complete, else nil.
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then
  return false
end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local size = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[1]) < size then
  return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
-- HGETALL rather than HMGET of every index: unpack() of 10,000 fields would
-- overflow Lua's stack.
local all = redis.call('HGETALL', KEYS[1])
local ordered = {}
for i = 1, #all, 2 do
  ordered[tonumber(all[i]) + 1] = all[i + 1]
end
return ordered
