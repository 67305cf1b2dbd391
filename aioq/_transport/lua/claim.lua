-- claim: take over messages of one queue whose lease lapsed (their worker died
-- or stalled), most urgent level first, at most COUNT in all. Entries this
-- consumer owns are never claimed here (a worker must not steal from itself:
-- after a stall it would run them twice); idle ones are only reported, so the
-- worker can take back those it no longer holds (a give-back, a lost task).
--
-- Each call reads at most PAGE entries of each pending list (XPENDING, no
-- IDLE filter: a scan bounded by PAGE, not by the list's length) from the
-- stream's cursor, so a long pending list is walked across calls instead of
-- starving everything past its first page.
--
-- KEYS     the queue's level streams
-- ARGV[1]  consumer group
-- ARGV[2]  consumer (this worker)
-- ARGV[3]  min idle time (ms)
-- ARGV[4]  most messages to take
-- ARGV[5]  page: most pending entries to read per stream
-- ARGV[6..]  cursor of each stream: the last pending id looked at, 0-0 for the start
--
-- Returns: {cursor per key..., deleted count, own idle count n,
--           n times (key index, entry id) of this consumer's idle entries,
--           then per claimed entry: key index, entry id, fields, times delivered}
local group, me = ARGV[1], ARGV[2]
local idle = tonumber(ARGV[3])
local left = tonumber(ARGV[4])
local page = tonumber(ARGV[5])
local cursors, claimed, mine = {}, {}, {}
local deleted = 0
for i, key in ipairs(KEYS) do
  local cursor = ARGV[5 + i]
  cursors[i] = cursor
  if left > 0 and redis.call('EXISTS', key) == 1 then
    local start = '-'
    if cursor ~= '0-0' then
      start = '(' .. cursor
    end
    local pending = redis.pcall('XPENDING', key, group, start, '+', page)
    if not pending.err then
      local ids, counts = {}, {}
      local last = nil
      local stopped = false
      for _, p in ipairs(pending) do
        if #ids >= left then
          stopped = true
          break
        end
        last = p[1]
        if p[3] >= idle then
          if p[2] == me then
            mine[#mine + 1] = i
            mine[#mine + 1] = p[1]
          else
            ids[#ids + 1] = p[1]
            counts[p[1]] = p[4]
          end
        end
      end
      if stopped or #pending >= page then
        cursors[i] = last or cursor
      else
        cursors[i] = '0-0'  -- walked to the end: start over next time
      end
      if #ids > 0 then
        local got = redis.call('XCLAIM', key, group, me, idle, unpack(ids))
        -- XCLAIM drops ids deleted from the stream from the pending list
        deleted = deleted + #ids - #got
        for _, entry in ipairs(got) do
          claimed[#claimed + 1] = i
          claimed[#claimed + 1] = entry[1]
          claimed[#claimed + 1] = entry[2]
          claimed[#claimed + 1] = counts[entry[1]] + 1  -- XCLAIM counted this delivery
        end
        left = left - #got
      end
    end
  end
end
local out = cursors
out[#out + 1] = deleted
out[#out + 1] = #mine / 2
for _, v in ipairs(mine) do
  out[#out + 1] = v
end
for _, v in ipairs(claimed) do
  out[#out + 1] = v
end
return out
