-- Fencing: a write made on behalf of one delivery of a message lands only
-- while that delivery still holds the message.
--
-- holds_entry(stream, group, id, consumer, deliveries): the stream side. The
-- entry is pending for `consumer` with exactly `deliveries` deliveries (a
-- takeover by another worker, or a later redelivery, changes one of them).
-- Returns HELD_HELD, HELD_NOT_HELD, or HELD_NO_GROUP when the group itself is
-- gone (Redis lost its data: nobody else can hold it either). Needs codes.lua.
local function holds_entry(stream, group, id, consumer, deliveries)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if p.err then
    return HELD_NO_GROUP
  end
  if p[1] and p[1][2] == consumer and tonumber(p[1][4]) == tonumber(deliveries) then
    return HELD_HELD
  end
  return HELD_NOT_HELD
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

-- ack_entry(stream, group, id, consumer, deliveries): acknowledge and delete an
-- entry this delivery still holds (when the group is gone, only delete it).
-- Returns 1 when done, 0 when another delivery holds the entry (left alone).
local function ack_entry(stream, group, id, consumer, deliveries)
  local held = holds_entry(stream, group, id, consumer, deliveries)
  if held == HELD_NOT_HELD then
    return 0
  end
  if held == HELD_HELD then
    redis.call('XACK', stream, group, id)
  end
  redis.call('XDEL', stream, id)
  return 1
end
