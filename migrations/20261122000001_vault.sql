-- The credential vault: OAuth connections and their tokens. Token columns hold AES-256-GCM
-- envelopes ({"kid": ..., "d": ...}), never plaintext. Portable SQL: SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,
    -- The credential (connection) name from the config.
    credential TEXT NOT NULL,
    -- For per-user connections, the caller who connected; empty for shared ones.
    issuer TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    access_token TEXT,
    refresh_token TEXT,
    -- Unix seconds.
    expires_at BIGINT,
    scope TEXT,
    -- healthy | unhealthy
    status TEXT NOT NULL DEFAULT 'healthy',
    updated_at BIGINT NOT NULL,
    UNIQUE (credential, issuer, subject)
);
