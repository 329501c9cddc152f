-- description: Chains a principal started or a workload took part in (the query behind `trail activity`)
-- param: principal text  Consumer, JWT subject, API key credential, SPIFFE ID or service name
-- param: since time = 1970-01-01T00:00:00Z  Only chains starting at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only chains starting at or before this time
SELECT c.trace_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.start / 1e9, 'unixepoch') AS start,
       c.origin_principal AS principal, c.origin_type AS principal_type, c.origin_client_ip AS client_ip,
       c.hop_count AS hops,
       (SELECT group_concat(DISTINCT kind) FROM finding f WHERE f.trace_id = c.trace_id) AS findings
  FROM chain c
 WHERE (c.origin_principal = :principal OR c.origin_credential = :principal
        OR c.trace_id IN (SELECT trace_id FROM hop
                           WHERE caller = :principal OR caller_spiffe = :principal OR caller_service = :principal))
   AND c.start BETWEEN :since AND :until
 ORDER BY c.start
