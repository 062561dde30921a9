-- The web console (/ui): local users and their sign-in sessions. Timestamps are epoch
-- milliseconds.

-- A person who signs in to the console. The role and apps mean what an API token's do
-- (admin sees every app; editor writes in its apps; viewer reads its apps).
CREATE TABLE console_users (
    name          TEXT    PRIMARY KEY,
    -- PHC string of an argon2id hash; never the password.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    -- JSON array of app (namespace) names.
    apps          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
-- copy of the database cannot be replayed as a session. `csrf` is the synchronizer token every
-- form of this session must carry back.
CREATE TABLE console_sessions (
    id_hash    TEXT    PRIMARY KEY,
    user_name  TEXT    NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
