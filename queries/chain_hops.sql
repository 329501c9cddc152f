-- description: Every hop of one trace in chain order (the query behind `trail chain`)
-- param: trace_id text  The trace id, 32 lowercase hex
SELECT h.idx AS hop, h.parent_idx AS parent, h.caller, h.callee, h.method, h.path, h.status,
       strftime('%Y-%m-%dT%H:%M:%fZ', h.start / 1e9, 'unixepoch') AS start,
       h.transport, h.serial, h.cert_state AS certificate, h.policy, h.observed_by
  FROM hop h
 WHERE h.trace_id = :trace_id
 ORDER BY h.idx
