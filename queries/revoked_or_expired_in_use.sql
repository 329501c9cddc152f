-- description: Revoked, expired or not-yet-valid certificates still presented in calls
-- param: since time = 1970-01-01T00:00:00Z  Only calls at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only calls at or before this time
SELECT h.caller AS identity, h.serial, h.cert_state AS certificate, count(*) AS calls,
       group_concat(DISTINCT h.callee) AS callees,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(h.start) / 1e9, 'unixepoch') AS first_use,
       strftime('%Y-%m-%dT%H:%M:%fZ', max(h.start) / 1e9, 'unixepoch') AS last_use,
       min(h.trace_id) AS example_trace
  FROM hop h
 WHERE h.cert_state IN ('revoked', 'expired', 'not-yet-valid')
   AND h.start BETWEEN :since AND :until
 GROUP BY h.caller, h.serial, h.cert_state
 ORDER BY min(h.start)
