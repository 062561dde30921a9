-- The deploy module: apps registered (POST /api/apps, `aiops deploy`) and each deployment of
-- one. Timestamps are epoch milliseconds, JSON is TEXT, as in every migration.
CREATE TABLE apps (
    name       TEXT    PRIMARY KEY,
    namespace  TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX apps_namespace ON apps (namespace);

CREATE TABLE deployments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app         TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    image       TEXT    NOT NULL,
    -- running, succeeded or failed; a deploy cut short (crash, Ctrl-C) stays running.
    status      TEXT    NOT NULL,
    detail      TEXT,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deployments_app ON deployments (app, started_at);
