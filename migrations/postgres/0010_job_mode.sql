-- The trust mode a job was created in (`shadow`, `approve`, `auto`), so SQL can filter on it:
-- the guards' lanes, the shadow evidence, the API's `mode=` filter. Derived from the stored
-- spec (`job::JobSpec.mode`), so the column can never disagree with what the job runs; specs
-- written before the trust ladder have no mode and read `auto`, which is what they did.
ALTER TABLE jobs ADD COLUMN mode TEXT
    GENERATED ALWAYS AS (COALESCE(spec::jsonb ->> 'mode', 'auto')) STORED;

-- One active repair per target, per lane: a shadow job (a dry run that changes nothing) never
-- holds the target against a real repair, nor a real repair against a shadow job; within a
-- lane the guarantee is unchanged. Migration 0011 (approve) recreates this index with its
-- state: it must keep the `mode = 'shadow'` column.
DROP INDEX jobs_one_active_per_target;
CREATE UNIQUE INDEX jobs_one_active_per_target ON jobs (target_key, (mode = 'shadow'))
    WHERE state IN ('queued', 'waiting', 'running', 'verifying');
CREATE INDEX jobs_mode_rule ON jobs (mode, rule, created_at);
