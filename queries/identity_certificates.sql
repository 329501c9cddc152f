-- description: Certificates issued to SPIFFE IDs with their lifecycle events (the data behind `trail identities`)
-- param: spiffe_prefix text = spiffe://  Only identities starting with this prefix
SELECT e.spiffe_id, e.serial, e.kind,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.time / 1e9, 'unixepoch') AS time,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.not_before / 1e9, 'unixepoch') AS not_before,
       strftime('%Y-%m-%dT%H:%M:%fZ', e.not_after / 1e9, 'unixepoch') AS not_after,
       e.reason, e.format AS source_format
  FROM identity_event e
 WHERE substr(coalesce(e.spiffe_id, (SELECT spiffe_id FROM identity_event i WHERE i.serial = e.serial AND i.spiffe_id IS NOT NULL LIMIT 1), ''), 1, length(:spiffe_prefix)) = :spiffe_prefix
 ORDER BY e.spiffe_id, e.serial, e.time
