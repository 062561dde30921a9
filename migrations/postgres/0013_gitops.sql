-- GitOps awareness: who owned a job's target, the holds that pause Argo CD or Flux for one
-- object, and reverted repairs counted apart in the knowledge base. Timestamps are epoch
-- milliseconds.

-- Who owned the target when the job's playbook first read it (JSON of gitops::Ownership:
-- controller and field managers); NULL when the playbook changed nothing owned-checkable.
ALTER TABLE jobs ADD COLUMN gitops TEXT;

-- A hold: a GitOps controller paused for one object by a repair under `gitops: hold`, kept
-- here so that any replica alive releases it at expiry or once Git agrees, also after a restart.
CREATE TABLE gitops_holds (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           BIGINT NOT NULL,
    target_namespace TEXT    NOT NULL,
    target_kind      TEXT    NOT NULL,
    target_name      TEXT    NOT NULL,
    -- JSON of gitops::Controller, gitops::HoldPlacement (mechanism and what to put back) and
    -- gitops::GitChange (what to change in Git).
    controller       TEXT    NOT NULL,
    placement        TEXT    NOT NULL,
    change           TEXT    NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    released_at      BIGINT,
    -- expiry | git | api:<who>
    released_by      TEXT,
    -- The last failed release attempt, kept until one succeeds (the hold stays open).
    release_error    TEXT,
    release_attempts BIGINT NOT NULL DEFAULT 0
);
-- One open hold per object: a second repair extends it rather than pausing twice (a second
-- pause would save the first one's "off" as the value to put back).
CREATE UNIQUE INDEX gitops_holds_one_open ON gitops_holds (target_namespace, target_kind, target_name)
    WHERE released_at IS NULL;
CREATE INDEX gitops_holds_expiry ON gitops_holds (expires_at) WHERE released_at IS NULL;

-- Reverted repairs (a controller set the change back during verification): counted in runs,
-- never in succeeded, and reported apart.
ALTER TABLE kb_daily ADD COLUMN reverted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kb_daily_all ADD COLUMN reverted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kb_target_daily ADD COLUMN reverted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kb_target_period ADD COLUMN reverted BIGINT NOT NULL DEFAULT 0;
