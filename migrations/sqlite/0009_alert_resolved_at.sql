-- The firing row's end: the time the alert resolved, in epoch ms: the endsAt of the matching
-- resolve (same fingerprint and startsAt), or when that resolve was received if it has none.
-- NULL while the alert fires.
-- "Firing now" is a firing row with no resolved_at; the API shows it as `resolved_at`.
ALTER TABLE alert_events ADD COLUMN resolved_at INTEGER;

-- Rows recorded before this column: the resolve, where it was stored, ends them now.
UPDATE alert_events SET resolved_at = (
    SELECT COALESCE(r.ends_at, r.received_at) FROM alert_events r
    WHERE r.fingerprint = alert_events.fingerprint
      AND r.starts_at = alert_events.starts_at
      AND r.status = 'resolved'
)
WHERE status = 'firing';
