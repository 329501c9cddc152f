-- description: Edge principals (consumers, API keys, JWT subjects, client certificates) per upstream resource
-- param: since time = 1970-01-01T00:00:00Z  Only requests at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only requests at or before this time
SELECT h.callee AS upstream, h.method, h.path,
       c.origin_principal AS principal, c.origin_type AS principal_type,
       group_concat(DISTINCT c.origin_client_ip) AS client_ips,
       count(*) AS requests,
       sum(CASE WHEN h.status >= 400 THEN 1 ELSE 0 END) AS failed,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(h.start) / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', max(h.start) / 1e9, 'unixepoch') AS last_seen
  FROM hop h JOIN chain c ON c.trace_id = h.trace_id
 WHERE c.via_gateway = 1 AND h.parent_idx IS NULL AND h.observed_by LIKE '%"gateway"%'
   AND h.start BETWEEN :since AND :until
 GROUP BY h.callee, h.method, h.path, c.origin_principal, c.origin_type
 ORDER BY h.callee, h.path, requests DESC
