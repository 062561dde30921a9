-- Knowledge base: how long each successful repair took to recover (alert start → resolved),
-- and the indexes the knowledge-base queries group and filter by.
ALTER TABLE jobs ADD COLUMN ttr_ms BIGINT;
CREATE INDEX jobs_kb_alert_playbook ON jobs (alertname, playbook, created_at);
CREATE INDEX jobs_kb_created ON jobs (created_at);
CREATE INDEX jobs_kb_namespace ON jobs (target_namespace, alertname, created_at);
