-- description: Who reached a path prefix (the query behind `trail who-accessed /prefix*`), one row per principal and chain
-- param: path_prefix text = /  Path prefix of the resource, e.g. /payments/
-- param: since time = 1970-01-01T00:00:00Z  Only calls at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only calls at or before this time
SELECT c.origin_principal AS principal,
       c.origin_type AS principal_type,
       group_concat(DISTINCT c.origin_client_ip) AS client_ips,
       h.chain_path AS chain,
       h.caller,
       h.callee,
       count(*) AS calls,
       strftime('%Y-%m-%dT%H:%M:%fZ', min(h.start) / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', max(h.start) / 1e9, 'unixepoch') AS last_seen
  FROM hop h JOIN chain c ON c.trace_id = h.trace_id
 WHERE substr(h.path, 1, length(:path_prefix)) = :path_prefix
   AND h.start BETWEEN :since AND :until
 GROUP BY c.origin_principal, c.origin_type, h.chain_path
 ORDER BY min(h.start)
