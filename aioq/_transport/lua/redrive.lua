-- redrive: put dead letters back on their queue's stream, as they were.
--
-- KEYS[1]  dead-letter stream
-- KEYS[2]  queue stream
-- ARGV…    dead-letter entry ids
--
-- Returns: how many entries were moved (unknown ids are skipped).
local moved = 0
for i = 1, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if found[1] then
    local fields = found[1][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'm' and fields[j + 1] ~= '' then
        redis.call('XADD', KEYS[2], '*', 'm', fields[j + 1])
      end
    end
    redis.call('XDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
