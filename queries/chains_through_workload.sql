-- description: Chains that pass through a given workload (as caller or callee), with their origin
-- param: workload text  SPIFFE ID or service name of the workload
-- param: since time = 1970-01-01T00:00:00Z  Only chains starting at or after this time
-- param: until time = 2100-01-01T00:00:00Z  Only chains starting at or before this time
SELECT c.trace_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.start / 1e9, 'unixepoch') AS start,
       c.origin_principal AS principal, c.origin_type AS principal_type, c.origin_client_ip AS client_ip,
       c.via_gateway, c.hop_count AS hops,
       (SELECT group_concat(DISTINCT kind) FROM finding f WHERE f.trace_id = c.trace_id) AS findings
  FROM chain c
 WHERE c.trace_id IN (SELECT trace_id FROM hop
                       WHERE :workload IN (caller, callee, caller_spiffe, callee_spiffe, caller_service, callee_service))
   AND c.start BETWEEN :since AND :until
 ORDER BY c.start
