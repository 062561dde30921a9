-- Intake, decisions and the job state machine. Timestamps are epoch milliseconds (BIGINT),
-- JSON is TEXT: the same shapes as the SQLite migration, so one query text serves both.

CREATE TABLE alert_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint   TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    starts_at     BIGINT  NOT NULL,
    ends_at       BIGINT,
    alertname     TEXT    NOT NULL,
    namespace     TEXT,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    generator_url TEXT    NOT NULL,
    receiver      TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    received_at   BIGINT  NOT NULL
);
-- The dedup truth: a re-send of the same occurrence in the same status conflicts here.
CREATE UNIQUE INDEX alert_events_dedup ON alert_events (fingerprint, status, starts_at);
CREATE INDEX alert_events_received ON alert_events (received_at);

CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_event_id   BIGINT  NOT NULL REFERENCES alert_events (id),
    fingerprint      TEXT    NOT NULL,
    alertname        TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    playbook         TEXT    NOT NULL,
    params           TEXT    NOT NULL,
    escalate         TEXT    NOT NULL,
    chain_index      BIGINT  NOT NULL,
    parent_id        BIGINT  REFERENCES jobs (id),
    target_namespace TEXT    NOT NULL,
    target_kind      TEXT    NOT NULL,
    target_name      TEXT    NOT NULL,
    target_key       TEXT    NOT NULL,
    dry_run          BIGINT  NOT NULL,
    timeout_ms       BIGINT,
    state            TEXT    NOT NULL,
    not_before       BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    owner            TEXT,
    heartbeat_at     BIGINT,
    outcome          TEXT,
    error            TEXT
);
-- One active repair per target, enforced by the store so that replicas cannot both act.
CREATE UNIQUE INDEX jobs_one_active_per_target ON jobs (target_key)
    WHERE state IN ('queued', 'waiting', 'running', 'verifying');
CREATE INDEX jobs_rule_target ON jobs (rule, target_key, created_at);
CREATE INDEX jobs_state_due ON jobs (state, not_before);
CREATE INDEX jobs_fingerprint_state ON jobs (fingerprint, state);

CREATE TABLE job_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     BIGINT  NOT NULL REFERENCES jobs (id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    note       TEXT    NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id);

CREATE TABLE job_steps (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  BIGINT  NOT NULL REFERENCES jobs (id),
    at      BIGINT  NOT NULL,
    action  TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
CREATE INDEX job_steps_job ON job_steps (job_id);

-- Every verdict on a firing alert that matched a rule, refusals included, with its reason.
CREATE TABLE decisions (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_event_id BIGINT  NOT NULL REFERENCES alert_events (id),
    rule           TEXT    NOT NULL,
    target_key     TEXT,
    verdict        TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    job_id         BIGINT  REFERENCES jobs (id),
    created_at     BIGINT  NOT NULL
);
CREATE INDEX decisions_created ON decisions (created_at);
CREATE INDEX decisions_alert ON decisions (alert_event_id);

-- Hand-offs beyond a job: the next playbook of a chain, a notification route, or humans.
CREATE TABLE escalations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      BIGINT  REFERENCES jobs (id),
    rule        TEXT,
    target_key  TEXT,
    kind        TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX escalations_job ON escalations (job_id);

-- Storm brake episodes; at most one open (released_at IS NULL) at a time.
CREATE TABLE storm_brakes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    engaged_at  BIGINT  NOT NULL,
    released_at BIGINT,
    targets     BIGINT  NOT NULL,
    window_ms   BIGINT  NOT NULL,
    open        BIGINT
);
CREATE UNIQUE INDEX storm_brakes_one_open ON storm_brakes (open);
