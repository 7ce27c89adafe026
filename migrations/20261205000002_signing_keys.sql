-- Warden's own signing keys (ES256): what signs the tokens and assertions Warden issues. The
-- private key is a vault envelope (AES-256-GCM under the key ring, bound to the row's kid); the
-- newest key that is not retired signs, and every key not retired is published.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_key TEXT NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    -- The order keys were made in (the newest signs); replicas that make one at once tie, and
    -- the kid decides.
    seq BIGINT NOT NULL,
    retired_at BIGINT
);
