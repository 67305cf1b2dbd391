-- redrive: put dead letters back on their queue, as they were, at the
-- priority level they came from.
--
-- KEYS[1]      dead-letter stream
-- KEYS[2..n]   the queue's level streams, most urgent (9) first
-- ARGV…        dead-letter entry ids
--
-- Returns: how many entries were moved (unknown ids are skipped).
local top = #KEYS - 2  -- the highest level
local moved = 0
for i = 1, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if found[1] then
    local fields = found[1][2]
    local payload, level = nil, 0
    for j = 1, #fields, 2 do
      if fields[j] == 'm' and fields[j + 1] ~= '' then
        payload = fields[j + 1]
      elseif fields[j] == 'level' then
        level = tonumber(fields[j + 1]) or 0
      end
    end
    if payload then
      if level < 0 or level > top then
        level = 0
      end
      redis.call('XADD', KEYS[2 + top - level], '*', 'm', payload)
    end
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
