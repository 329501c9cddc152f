-- description: Findings of one kind in a window (the query behind `trail findings --kind`)
-- param: kind text  A finding kind, e.g. revoked-certificate
-- param: since time = 1970-01-01T00:00:00Z  Only findings at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only findings at or before this time
SELECT f.id, f.kind, f.severity, f.trace_id, f.hop_idx AS hop, f.principal, f.identity, f.serial,
       strftime('%Y-%m-%dT%H:%M:%fZ', f.time / 1e9, 'unixepoch') AS time, f.detail
  FROM finding f
 WHERE f.kind = :kind AND f.time BETWEEN :since AND :until
 ORDER BY f.time, f.trace_id, f.hop_idx
