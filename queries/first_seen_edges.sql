-- description: Caller → callee edges seen for the first time inside a window (new paths through the estate)
-- param: since time  Start of the window (RFC 3339 or a duration like 24h)
-- param: until time = 2100-01-01T00:00:00Z  End of the window
SELECT h.caller, h.callee,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(h.start) / 1e9, 'unixepoch') AS first_seen,
       count(*) AS calls,
       min(h.trace_id) AS first_trace
  FROM hop h
 GROUP BY h.caller, h.callee
HAVING min(h.start) BETWEEN :since AND :until
 ORDER BY min(h.start)
