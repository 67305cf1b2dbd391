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
-- whether this attempt holds it, and the reply channel the record names (false
-- for none: see notify.lua). attempt '0' means a write on the message's
-- behalf without a running attempt (dead-lettering): it holds any non-final job.
local function holds_job(record, worker, attempt)
  local r = redis.call('HMGET', record, 'state', 'worker', 'attempts', 'reply')
  local state = r[1]
  if not state or attempt == '0' then
    return state, true, r[4]
  end
  return state, (r[2] == worker and r[3] == attempt), r[4]
end

-- ack_entry(acks, stream, group, id, consumer, deliveries): acknowledge and
-- delete an entry this delivery still holds (when the group is gone, only
-- delete it), in the script's `acks` batch: the XACK and XDEL of a whole batch
-- go out once per stream, from ack_flush(acks, group), before the script returns.
-- (One XDEL per entry, oldest first, cost Redis ~6 us each: each one looks for
-- the stream's new first entry past every entry deleted before it; one XDEL for
-- a hundred entries costs ~1 us per entry.)
-- The stream side of the fence is read once per stream and batch, too: a
-- script that acks several entries first names them all with ack_plan(acks,
-- stream, id), and the first ack_entry of that stream reads the consumer's
-- pending entries between the lowest and the highest id planned, in one
-- XPENDING (an XPENDING per entry cost ~2 us each). An entry not planned, or
-- not in a reply that was cut short by its count, is checked on its own.
-- Returns 1 when done, 0 when another delivery holds the entry (left alone).
local PENDING_PAGE = 1000

local function ack_batch()
  return {order = {}, by = {}, plan = {}}
end

-- an entry id as two numbers (ms, seq); ms fits a Lua number exactly
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function ack_plan(acks, stream, id)
  local ms, seq = id_parts(id)
  if not ms then
    return  -- not an entry id: checked on its own
  end
  local plan = acks.plan[stream]
  if not plan then
    acks.plan[stream] = {low = id, lms = ms, lseq = seq, high = id, hms = ms, hseq = seq,
      n = 1, ids = {[id] = true}}
    return
  end
  if ms < plan.lms or (ms == plan.lms and seq < plan.lseq) then
    plan.low, plan.lms, plan.lseq = id, ms, seq
  end
  if ms > plan.hms or (ms == plan.hms and seq > plan.hseq) then
    plan.high, plan.hms, plan.hseq = id, ms, seq
  end
  plan.n = plan.n + 1
  plan.ids[id] = true
end

-- pending(acks, stream, group, consumer, id): when `id` was planned with others,
-- the planned range's entries pending for `consumer` (id -> deliveries, read
-- once) and whether that reply was cut short; false when the group is gone; nil
-- when `id` is to be checked on its own.
local function pending(acks, stream, group, consumer, id)
  local plan = acks.plan[stream]
  if not plan or plan.n < 2 or not plan.ids[id] then
    return nil
  end
  if plan.held == nil then
    local p = redis.pcall('XPENDING', stream, group, plan.low, plan.high, PENDING_PAGE, consumer)
    if p.err then
      plan.held = false
    else
      local held = {}
      for _, e in ipairs(p) do
        held[e[1]] = tonumber(e[4])
      end
      plan.held = held
      plan.full = #p >= PENDING_PAGE
    end
  end
  return plan.held, plan.full
end

local function ack_entry(acks, stream, group, id, consumer, deliveries)
  local held
  local seen, full = pending(acks, stream, group, consumer, id)
  if seen == false then
    held = HELD_NO_GROUP
  elseif seen and seen[id] then
    held = seen[id] == tonumber(deliveries) and HELD_HELD or HELD_NOT_HELD
  elseif seen and not full then
    held = HELD_NOT_HELD
  else
    held = holds_entry(stream, group, id, consumer, deliveries)
  end
  if held == HELD_NOT_HELD then
    return 0
  end
  local batch = acks.by[stream]
  if not batch then
    batch = {ack = {}, del = {}}
    acks.by[stream] = batch
    acks.order[#acks.order + 1] = stream
  end
  if held == HELD_HELD then
    batch.ack[#batch.ack + 1] = id
  end
  batch.del[#batch.del + 1] = id
  return 1
end

local function ack_flush(acks, group)
  for _, stream in ipairs(acks.order) do
    local batch = acks.by[stream]
    if #batch.ack > 0 then
      redis.call('XACK', stream, group, unpack(batch.ack))
    end
    redis.call('XDEL', stream, unpack(batch.del))
  end
end
