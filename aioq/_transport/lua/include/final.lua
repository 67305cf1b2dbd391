-- is_final(state): a job in one of these states has its outcome; nothing
-- may change it any more (first writer wins).
local function is_final(state)
  return state == 'succeeded' or state == 'failed' or state == 'aborted'
end
