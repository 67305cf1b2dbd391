-- reclaim: take back idle entries this consumer owns but no longer holds (given
-- back after a failed start, or left by a task that ended without its
-- completion): a new delivery to itself, counted like any other.
--
-- KEYS[1]  level stream
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  min idle time (ms): an entry renewed since the caller looked is left
-- ARGV[4..]  entry ids
--
-- Returns: per entry taken back: entry id, fields, times delivered; entries
-- another consumer owns now, or no longer idle, are skipped.
local group, me, idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == me and p[1][3] >= idle then
    local got = redis.call('XCLAIM', KEYS[1], group, me, idle, ARGV[i])
    if got[1] then
      out[#out + 1] = got[1][1]
      out[#out + 1] = got[1][2]
      out[#out + 1] = p[1][4] + 1
    end
  end
end
return out
