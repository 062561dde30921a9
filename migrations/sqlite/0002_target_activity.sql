-- One row per target that matched a rule, with when it last did. The storm brake counts the
-- rows seen within its window: distinct targets, without scanning every decision in the window
-- (which grows with the storm itself).
CREATE TABLE target_activity (
    target_key TEXT PRIMARY KEY,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX target_activity_last_seen ON target_activity (last_seen);

INSERT INTO target_activity (target_key, last_seen)
    SELECT target_key, MAX(created_at) FROM decisions WHERE target_key IS NOT NULL GROUP BY target_key;
