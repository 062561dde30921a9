-- Knowledge base at scale, human notes, and the API's audit log.

-- Rollups of finished repairs, kept up to date in the transaction that finishes a job (and the
-- one that records its time to recover), so they can never disagree with the jobs they count,
-- also with two replicas writing. Stats then read O(days × groups) rows instead of every repair
-- in the window, and survive the pruning of old jobs (retention.repairs).
-- day = created_at / 86400000 (UTC days since the epoch); period = day / 30.

-- Per app (namespace): what a token limited to some apps reads.
CREATE TABLE kb_daily (
    day         BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    alertname   TEXT   NOT NULL,
    playbook    TEXT   NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    ttr_count   BIGINT NOT NULL,
    ttr_sum_ms  BIGINT NOT NULL,
    PRIMARY KEY (namespace, day, alertname, playbook)
);

-- Every app together: what admins and the CLI read (days × rules rows, whatever the fleet size).
CREATE TABLE kb_daily_all (
    day         BIGINT NOT NULL,
    alertname   TEXT   NOT NULL,
    playbook    TEXT   NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    ttr_count   BIGINT NOT NULL,
    ttr_sum_ms  BIGINT NOT NULL,
    PRIMARY KEY (day, alertname, playbook)
);

-- Per target, by day and by 30-day period: a window reads whole periods plus the days before
-- the first whole one, so a year costs ~12 + 30 rows per target instead of 365.
CREATE TABLE kb_target_daily (
    day         BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    target_key  TEXT   NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    PRIMARY KEY (day, namespace, target_key)
);
CREATE TABLE kb_target_period (
    period      BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    target_key  TEXT   NOT NULL,
    runs        BIGINT NOT NULL,
    succeeded   BIGINT NOT NULL,
    PRIMARY KEY (period, namespace, target_key)
);

-- The p90 time to recover reads the newest recoveries of a group from jobs; these cover that
-- query (no table lookups), for every app and for one app.
CREATE INDEX jobs_kb_ttr ON jobs (alertname, playbook, state, dry_run, created_at, ttr_ms);
CREATE INDEX jobs_kb_ttr_ns ON jobs (target_namespace, alertname, playbook, state, dry_run, created_at, ttr_ms);

-- Existing history.
INSERT INTO kb_daily (day, namespace, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms)
    SELECT created_at / 86400000, target_namespace, alertname, playbook, COUNT(*),
           CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT),
           CAST(SUM(CASE WHEN state = 'succeeded' AND ttr_ms IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
           CAST(COALESCE(SUM(CASE WHEN state = 'succeeded' THEN ttr_ms END), 0) AS BIGINT)
    FROM jobs WHERE dry_run = 0 AND state IN ('succeeded', 'failed', 'escalated')
    GROUP BY created_at / 86400000, target_namespace, alertname, playbook;
INSERT INTO kb_daily_all (day, alertname, playbook, runs, succeeded, ttr_count, ttr_sum_ms)
    SELECT day, alertname, playbook, CAST(SUM(runs) AS BIGINT), CAST(SUM(succeeded) AS BIGINT), CAST(SUM(ttr_count) AS BIGINT), CAST(SUM(ttr_sum_ms) AS BIGINT)
    FROM kb_daily GROUP BY day, alertname, playbook;
INSERT INTO kb_target_daily (day, namespace, target_key, runs, succeeded)
    SELECT created_at / 86400000, target_namespace, target_key, COUNT(*),
           CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT)
    FROM jobs WHERE dry_run = 0 AND state IN ('succeeded', 'failed', 'escalated')
    GROUP BY created_at / 86400000, target_namespace, target_key;
INSERT INTO kb_target_period (period, namespace, target_key, runs, succeeded)
    SELECT day / 30, namespace, target_key, CAST(SUM(runs) AS BIGINT), CAST(SUM(succeeded) AS BIGINT)
    FROM kb_target_daily GROUP BY day / 30, namespace, target_key;

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
