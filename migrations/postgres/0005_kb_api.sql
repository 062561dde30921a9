-- Knowledge base at scale, human notes, and the API's audit log.

-- Per-day rollup of finished repairs, kept up to date in the transaction that finishes a job
-- (and the one that records its time to recover). Stats read O(days × groups) rows instead of
-- every repair in the window, and survive the pruning of old jobs (retention.repairs).
-- day = created_at / 86400000 (UTC days since the epoch).
CREATE TABLE kb_daily (
    day         BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    alertname   TEXT   NOT NULL,
    playbook    TEXT   NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    ttr_count   BIGINT NOT NULL,
    ttr_sum_ms  BIGINT NOT NULL,
    PRIMARY KEY (day, namespace, alertname, playbook)
);
CREATE INDEX kb_daily_ns ON kb_daily (namespace, day);

-- The same per target, keyed so that per-target sums stream in key order.
CREATE TABLE kb_target_daily (
    namespace   TEXT   NOT NULL,
    target_key  TEXT   NOT NULL,
    day         BIGINT NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    PRIMARY KEY (namespace, target_key, day)
);

-- Time-to-recover histogram per day and group, for the p90 of groups too large to sort
-- (bucket = index into kb::TTR_BOUNDS_S). Small groups use the exact values from jobs.
CREATE TABLE kb_ttr_hist (
    day         BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    alertname   TEXT   NOT NULL,
    playbook    TEXT   NOT NULL,
    bucket      BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (day, namespace, alertname, playbook, bucket)
);

-- Existing history (no histogram: kb falls back to exact values when the histogram is short).
INSERT INTO kb_daily (day, namespace, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms)
    SELECT created_at / 86400000, target_namespace, alertname, playbook, COUNT(*),
           CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT),
           CAST(SUM(CASE WHEN state = 'succeeded' AND ttr_ms IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
           CAST(COALESCE(SUM(CASE WHEN state = 'succeeded' THEN ttr_ms END), 0) AS BIGINT)
    FROM jobs WHERE dry_run = 0 AND state IN ('succeeded', 'failed', 'escalated')
    GROUP BY created_at / 86400000, target_namespace, alertname, playbook;
INSERT INTO kb_target_daily (namespace, target_key, day, runs, succeeded)
    SELECT target_namespace, target_key, created_at / 86400000, COUNT(*),
           CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT)
    FROM jobs WHERE dry_run = 0 AND state IN ('succeeded', 'failed', 'escalated')
    GROUP BY target_namespace, target_key, created_at / 86400000;

-- What people know: notes attached to an alert name or a target, always inside one app
-- (namespace), which is what the API's per-app access is checked against.
CREATE TABLE kb_notes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   TEXT   NOT NULL,
    alertname   TEXT,
    target_key  TEXT,
    author      TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX kb_notes_alert ON kb_notes (namespace, alertname);
CREATE INDEX kb_notes_target ON kb_notes (target_key);

-- Every write through the HTTP API: who, when, what, and the answer it got.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    subject     TEXT   NOT NULL,
    role        TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    status      BIGINT NOT NULL,
    detail      TEXT   NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- GET /api/alerts filters by app (namespace) and pages by id.
CREATE INDEX alert_events_namespace ON alert_events (namespace, id);
-- Retention prunes by age.
CREATE INDEX decisions_job ON decisions (job_id);
CREATE INDEX escalations_created ON escalations (created_at);
-- Similar incidents: the newest repairs of an alert in an app, per outcome, without a sort.
CREATE INDEX jobs_kb_similar ON jobs (alertname, target_namespace, state, created_at);
