-- Deployments in steps (POST /api/apps/{name}/deploy, `aiops deploy [--detach]`). A deployment
-- is `queued`, then claimed by one process (`owner`), which beats `heartbeat_at` while it runs
-- it; a deployment whose heartbeat stops is failed, visibly, by whichever process looks next,
-- so none stays `running` after its process died. Each step is a row with its status and why.
ALTER TABLE deployments ADD COLUMN requested_by TEXT;
ALTER TABLE deployments ADD COLUMN owner TEXT;
ALTER TABLE deployments ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE deployments ADD COLUMN skip_dns_check INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deployments_status ON deployments (status);

CREATE TABLE deployment_steps (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id),
    position      INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    -- pending, running, succeeded, failed, skipped; not_run after a failed step.
    status        TEXT    NOT NULL,
    detail        TEXT,
    started_at    INTEGER,
    finished_at   INTEGER,
    PRIMARY KEY (deployment_id, position)
);
