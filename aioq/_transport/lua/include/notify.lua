-- notify(record, reply, channel, outcome): publish a job's outcome to its
-- waiters, once the record holds it. Always on the job's own channel (waiters of
-- any process); also, when the record names one (field 'reply', written at send
-- by a client that awaits results), on that client's reply channel, framed with
-- the record key so the client can tell its jobs apart:
-- '<length of the key>:<key><outcome>' (aioq/_transport/replies.py).
local function notify(record, reply, channel, outcome)
  redis.call('PUBLISH', channel, outcome)
  if reply then
    redis.call('PUBLISH', reply, #record .. ':' .. record .. outcome)
  end
end
