-- Repairs run by hand (`POST /api/repairs`, issue 21 part 6).
--
-- A job and a decision each point to an alert occurrence (NOT NULL), but a run against a
-- target has no alert. The request itself is recorded as that occurrence, marked with the API
-- token's subject in `requested_by`; every alert Alertmanager or Grafana sent has NULL there.
-- The alert listings and replay leave marked rows out: no alert fired.
ALTER TABLE alert_events ADD COLUMN requested_by TEXT;

-- The same mark on the decisions a run by hand records (its job, or a guard's refusal): they
-- are a person's request, not a rule's match on an alert, and read so (the alert's decisions
-- say who asked; replay, the maintenance summaries and the held-alert check count only the
-- intake's). NULL for every decision the intake made.
ALTER TABLE decisions ADD COLUMN requested_by TEXT;

-- Who started a job by hand, derived from its stored spec (`job::JobSpec.by_hand.by`, NULL
-- when an alert started it), so SQL can tell hand runs apart: a shadow rule's evidence is what
-- the rule did on alerts, not what people asked it to try. Generated, as `jobs.mode` is, so it
-- can never disagree with the spec.
ALTER TABLE jobs ADD COLUMN requested_by TEXT
    GENERATED ALWAYS AS (spec::jsonb -> 'by_hand' ->> 'by') STORED;
