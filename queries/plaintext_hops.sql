-- description: Service-to-service hops that travelled without TLS
-- param: since time = 1970-01-01T00:00:00Z  Only calls at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only calls at or before this time
SELECT h.caller, h.callee, h.method, h.path, count(*) AS calls,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(h.start) / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', max(h.start) / 1e9, 'unixepoch') AS last_seen,
       min(h.trace_id) AS example_trace
  FROM hop h
 WHERE h.transport = 'plaintext' AND h.start BETWEEN :since AND :until
 GROUP BY h.caller, h.callee, h.method, h.path
 ORDER BY min(h.start)
