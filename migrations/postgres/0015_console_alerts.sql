-- The console's alert center (issue 19) filters by severity and by what automation did, and
-- must page 100,000 alerts without scanning them.

-- The alert's `severity` label, copied out of `labels` at intake so that it can be indexed
-- (NULL when the alert has none).
ALTER TABLE alert_events ADD COLUMN severity TEXT;
UPDATE alert_events SET severity = labels::json ->> 'severity';
CREATE INDEX alert_events_severity ON alert_events (severity, id);

-- The jobs of an alert, newest last: a page's rows find their repairs, and the automation
-- filter finds an alert's newest job, through this index.
CREATE INDEX jobs_alert_event ON jobs (alert_event_id, id);
