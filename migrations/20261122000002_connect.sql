-- Per-user connections and the connect flow.
-- version: bumped on every token write, so a forced refresh happens once per rejected token and
-- a replica can tell that another one already refreshed.
ALTER TABLE connections ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- Why a connection is unhealthy (a stable code such as upstream_credential_refused).
ALTER TABLE connections ADD COLUMN status_reason TEXT;
-- Refresh lease (Unix milliseconds): the replica that set it refreshes; the others wait. A
-- conditional UPDATE takes it, so it works the same on SQLite and PostgreSQL and holds no
-- database connection while the provider answers.
ALTER TABLE connections ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;

-- Connect links and OAuth states. Only SHA-256 hashes of the link, the state and the browser
-- binding are stored; the PKCE verifier is an AES-256-GCM envelope.
CREATE TABLE IF NOT EXISTS connect_flows (
    link_hash TEXT PRIMARY KEY,
    credential TEXT NOT NULL,
    issuer TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    state_hash TEXT UNIQUE,
    verifier TEXT,
    browser_hash TEXT,
    started_at BIGINT
);
