-- Fencing: a write made on behalf of one delivery of a message lands only
-- while that delivery still holds the message.
--
-- holds_entry(stream, group, id, consumer, deliveries): the stream side. The
-- entry is pending for `consumer` with exactly `deliveries` deliveries (a
-- takeover by another worker, or a later redelivery, changes one of them).
-- Returns 1 when held, 0 when not, 2 when the group itself is gone (Redis
-- lost its data: nobody else can hold it either).
local function holds_entry(stream, group, id, consumer, deliveries)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if p.err then
    return 2
  end
  if p[1] and p[1][2] == consumer and tonumber(p[1][4]) == tonumber(deliveries) then
    return 1
  end
  return 0
end

-- holds_job(record, worker, attempt): the record side. The job's record was
-- last started by this worker's attempt (start.lua bumps `attempts` and sets
-- `worker` on every start), so a stale worker cannot overwrite the record of
-- an attempt that started after it. Returns the record's state (false when
-- there is no record: Redis lost it, so no later attempt exists either) and
-- whether this attempt holds it. attempt '0' means a write on the message's
-- behalf without a running attempt (dead-lettering): it holds any non-final job.
local function holds_job(record, worker, attempt)
  local r = redis.call('HMGET', record, 'state', 'worker', 'attempts')
  local state = r[1]
  if not state or attempt == '0' then
    return state, true
  end
  return state, (r[2] == worker and r[3] == attempt)
end
