-- emit(events, maxlen, kind, job, task, worker, attempt, detail): append one
-- lifecycle event to a queue's capped event stream ({p}:{queue}:events, in the
-- queue's slot). Its entry id is Redis time: the event's time and order.
-- events '' means events are off: nothing is written.
local function emit(events, maxlen, kind, job, task, worker, attempt, detail)
  if events == '' then
    return
  end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'k', kind, 'j', job,
    't', task, 'w', worker, 'a', attempt, 'd', detail)
end
