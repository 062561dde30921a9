-- How each job is verified, snapshotted from its rule at creation (JSON), like its chain.
ALTER TABLE jobs ADD COLUMN verify TEXT NOT NULL DEFAULT '{}';
