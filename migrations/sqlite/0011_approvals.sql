-- Approve mode (issue 17): a job may wait for a person's approval in `awaiting_approval`.
-- The state is active (it holds its target, so no other repair starts while people decide):
-- the one-active-per-target index is recreated with it.
DROP INDEX jobs_one_active_per_target;
CREATE UNIQUE INDEX jobs_one_active_per_target ON jobs (target_key)
    WHERE state IN ('awaiting_approval', 'queued', 'waiting', 'running', 'verifying');

-- When an awaiting job stops waiting and escalates to humans (epoch ms); NULL for jobs that
-- never waited for approval.
ALTER TABLE jobs ADD COLUMN approval_expires_at INTEGER;
CREATE INDEX jobs_approval_due ON jobs (state, approval_expires_at);

-- Every click on Approve or Reject, whatever came of it: the decision itself, and each
-- refusal (not allowed, expired, already decided, alert resolved, unknown job, reused link).
-- No foreign key on job_id: a click naming a job that does not exist is recorded too.
CREATE TABLE approvals (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL,
    choice     TEXT    NOT NULL,
    who        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    via        TEXT    NOT NULL,
    decided_at INTEGER NOT NULL,
    outcome    TEXT    NOT NULL
);
CREATE INDEX approvals_job ON approvals (job_id, id);
CREATE INDEX approvals_decided ON approvals (decided_at);

-- The nonces of signed approval links that were used: a link works once. Written in the
-- transaction of the decision it carried (the primary key makes a second use conflict).
CREATE TABLE approval_links_used (
    nonce   TEXT    PRIMARY KEY,
    job_id  INTEGER NOT NULL,
    used_at INTEGER NOT NULL
);
CREATE INDEX approval_links_used_at ON approval_links_used (used_at);
