-- Console sessions ended before their cookie expires (sign-out): every replica refuses a cookie
-- whose session id is here. Rows go once the cookie would have expired anyway.
CREATE TABLE IF NOT EXISTS console_revocations (
    sid TEXT PRIMARY KEY,
    -- Unix seconds: when the session's cookie expires.
    expires_at BIGINT NOT NULL
);
