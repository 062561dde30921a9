-- One typed job contract (`job::JobSpec`) in one column: the playbook, its params, the
-- escalation chain and the verification settings, which used to be three JSON columns read by
-- key name. Existing rows are converted; the chain and verify keep their stored shape.
-- `playbook` stays a column of its own as well: the knowledge base and success rates select on it.
ALTER TABLE jobs ADD COLUMN spec TEXT NOT NULL DEFAULT '{}';

UPDATE jobs SET spec = json_object(
    'playbook', playbook,
    'params', json(params),
    'escalate', json(escalate),
    'verify', json(verify)
);

ALTER TABLE jobs DROP COLUMN params;
ALTER TABLE jobs DROP COLUMN escalate;
ALTER TABLE jobs DROP COLUMN verify;
