-- now_ms(): Redis' own clock, in ms since the epoch — the only clock aioq's
-- decisions use (docs/reliability.md, "No clock but Redis'").
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
