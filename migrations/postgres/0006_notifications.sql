-- Notifications: the outbox. One row per event × channel, written in the transaction that
-- causes the event, so a crash loses no message and a rolled-back change sends none. Replicas
-- claim due rows with a lease (owner, lease_until); a row whose lease expired is claimed again.
-- Rendered text is stored, so a message is sent as it was when its event happened.
CREATE TABLE notifications (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event           TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    job_id          BIGINT REFERENCES jobs (id),
    namespace       TEXT,
    app             TEXT,
    dedup_key       TEXT    NOT NULL,
    retry_key       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    event_json      TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    owner           TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
CREATE INDEX notifications_dedup ON notifications (channel, dedup_key, created_at);
CREATE INDEX notifications_job ON notifications (job_id);
CREATE INDEX notifications_namespace ON notifications (namespace, created_at);

-- Every delivery attempt: when, how it ended, the API's status and any retry-after it gave.
CREATE TABLE notification_attempts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  BIGINT NOT NULL REFERENCES notifications (id),
    at               BIGINT  NOT NULL,
    result           TEXT    NOT NULL,
    http_status      BIGINT,
    retry_after_ms   BIGINT,
    detail           TEXT    NOT NULL
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id);
