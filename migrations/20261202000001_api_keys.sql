-- Gateway-issued API keys. The key itself is never stored: `hash` is HMAC-SHA-256 of the key
-- under the server's `api_keys.hash_key` (hex), so a dump of this table cannot be brute-forced
-- offline without that secret. `prefix` is the start of the key, shown to operators to tell keys
-- apart. Lists are JSON arrays of strings; times are Unix seconds.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant TEXT,
    scopes TEXT NOT NULL,
    roles TEXT NOT NULL,
    tools TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX IF NOT EXISTS api_keys_subject ON api_keys (subject);
