-- finish_job(record, worker, attempt, state, outcome, finished_ms, ttl_ms,
-- channel): record a job's final outcome for one attempt, fenced by the
-- attempt's token, first writer wins, and publish it (finish.lua, complete.lua).
-- Returns WROTE_WRITTEN, WROTE_FINAL (it had already ended: nothing changed) or
-- WROTE_FENCED (a later attempt holds the job: nothing written).
-- Needs codes.lua, final.lua, fence.lua.
local function finish_job(record, worker, attempt, final_state, outcome, finished_ms, ttl_ms,
                          channel)
  local state, held = holds_job(record, worker, attempt)
  if is_final(state) then
    return WROTE_FINAL
  end
  if not held then
    return WROTE_FENCED
  end
  redis.call('HSET', record, 'state', final_state, 'outcome', outcome, 'finished_ms', finished_ms)
  redis.call('PEXPIRE', record, ttl_ms)
  redis.call('PUBLISH', channel, outcome)
  return WROTE_WRITTEN
end
