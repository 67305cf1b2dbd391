-- end_group: a workflow ended early (a member of this group, or a step its
-- continuation needs, failed or was aborted): the group's barrier is closed —
-- members that finish later are not counted and its callback never runs — and
-- it expires with the results.
--
-- KEYS[1]  the group's barrier (hash)
-- ARGV[1]  TTL (ms)
redis.call('HSET', KEYS[1], 'ended', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
