-- Maintenance windows created through the API (POST /api/maintenance; windows from the settings
-- file are not stored), and one row per window occurrence whose summary was enqueued, so the
-- summary goes once across replicas. Timestamps are epoch milliseconds.
CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT,
    -- What it holds: every given one must match (at least one is given).
    namespace   TEXT,
    app         TEXT,
    rule        TEXT,
    -- One-off: starts_at and ends_at. Recurring: cron (or every, its shorthand), duration_ms
    -- and timezone.
    starts_at   INTEGER,
    ends_at     INTEGER,
    every       TEXT,
    cron        TEXT,
    duration_ms INTEGER,
    timezone    TEXT,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Set by POST /api/maintenance/{id}/end: no occurrence is open from then on.
    ended_at    INTEGER,
    ended_by    TEXT,
    -- After this the window is never open again: a one-off's end, or when it was ended.
    -- NULL for a recurring window still in force. Reads and retention select on it.
    until_at    INTEGER
);
CREATE INDEX maintenance_windows_until ON maintenance_windows (until_at);

CREATE TABLE maintenance_summaries (
    -- `settings:<name>` or `api:<id>`.
    window_key       TEXT    NOT NULL,
    occurrence_start INTEGER NOT NULL,
    occurrence_end   INTEGER NOT NULL,
    -- Alerts held during the occurrence (0: nothing was sent).
    held             INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (window_key, occurrence_start)
);
CREATE INDEX maintenance_summaries_created ON maintenance_summaries (created_at);

-- The summary counts the maintenance refusals of an occurrence by time.
CREATE INDEX decisions_reason_created ON decisions (reason, created_at);
