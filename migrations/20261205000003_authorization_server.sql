-- Warden's own authorization server (docs/authorization-server.md). Every secret it hands out
-- (codes, refresh tokens, client secrets, states, consent tokens, browser bindings) is stored
-- only as its SHA-256 (hex); what a pending sign-in must carry between the redirect and the
-- callback (the upstream PKCE verifier and nonce, the client's request) is a vault envelope.

-- Registered clients: by dynamic registration (RFC 7591) or from a client ID metadata document.
CREATE TABLE IF NOT EXISTS oauth_clients (
    client_id TEXT PRIMARY KEY,
    -- The registered metadata as JSON (redirect_uris, grant_types, client_name, ...).
    metadata TEXT NOT NULL,
    secret_hash TEXT,
    -- Unix seconds.
    created_at BIGINT NOT NULL
);

-- Sign-ins in progress: from /authorize to the consent decision.
CREATE TABLE IF NOT EXISTS oauth_requests (
    state_hash TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    -- A vault envelope of the request's JSON.
    request TEXT NOT NULL,
    -- Set at the callback: the consent token that the consent form posts back, and who signed in.
    consent_hash TEXT UNIQUE,
    identity TEXT,
    created_at BIGINT NOT NULL
);

-- Authorization codes: single use; a used code stays (used_at) so a second use is recognised
-- and the grant it made is revoked (OAuth 2.1 §4.1.3).
CREATE TABLE IF NOT EXISTS oauth_codes (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Grants: one sign-in of one person for one client; refresh tokens and codes belong to one.
CREATE TABLE IF NOT EXISTS oauth_grants (
    grant_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- The identity from the upstream ID token, as Warden's access tokens carry it (JSON).
    identity TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS oauth_grants_subject ON oauth_grants (subject, client_id);

-- Refresh tokens: rotated at each use; a used one presented again revokes its grant.
CREATE TABLE IF NOT EXISTS oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX IF NOT EXISTS oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);

-- Consents remembered per person and client: the scopes they agreed to.
CREATE TABLE IF NOT EXISTS oauth_consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subject, client_id)
);

-- Single-use markers (an ID-JAG's issuer and jti) until the assertion would have expired.
CREATE TABLE IF NOT EXISTS oauth_replay (
    marker TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
