-- The company IdP's tokens of a person who signed in through Warden's authorization server,
-- kept only when a token_exchange credential needs them as its subject token: the newest
-- sign-in's access token, ID token and refresh token, sealed together (a vault envelope bound
-- to the subject), and when the access token expires.
CREATE TABLE IF NOT EXISTS oauth_idp_tokens (
    subject TEXT PRIMARY KEY,
    tokens TEXT NOT NULL,
    -- Unix seconds; NULL when the IdP gave no lifetime.
    expires_at BIGINT,
    updated_at BIGINT NOT NULL
);
