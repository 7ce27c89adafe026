-- Quota usage: per quota, bucket (the key's values, joined) and calendar period (in the
-- configured time zone: '2026-11' or '2026-11-30'), the cost units spent. The key's parts are
-- also kept in their own columns (NULL when not part of the key) so usage can be looked up
-- by subject, tenant or client. `warned` is 1 once the period's warning event was written (by
-- whichever replica crossed the threshold first).
CREATE TABLE IF NOT EXISTS quota_usage (
    quota TEXT NOT NULL,
    bucket TEXT NOT NULL,
    period TEXT NOT NULL,
    subject TEXT,
    tenant TEXT,
    client TEXT,
    tool TEXT,
    server TEXT,
    used BIGINT NOT NULL,
    warned BIGINT NOT NULL DEFAULT 0,
    -- Unix seconds of the last spend.
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (quota, bucket, period)
);
CREATE INDEX IF NOT EXISTS quota_usage_subject ON quota_usage (subject);
CREATE INDEX IF NOT EXISTS quota_usage_tenant ON quota_usage (tenant);
