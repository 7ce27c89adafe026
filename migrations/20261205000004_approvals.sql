-- Calls an `approve` policy rule holds back until a person says yes (docs/approvals.md). A
-- request is bound to the exact call: the caller, the tool, a SHA-256 of the arguments in
-- canonical JSON, and the policy version; the arguments themselves (for the approver to read)
-- are a vault envelope. Single use is a conditional UPDATE from approved to used.
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    -- pending | approved | denied | used | expired (a pending one past its time, closed when the
    -- same call asks again)
    status TEXT NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT,
    tool TEXT NOT NULL,
    server TEXT,
    arguments_sha256 TEXT NOT NULL,
    arguments TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- Who may decide, as the rule said when the request was made (JSON).
    approvers TEXT NOT NULL,
    -- Unix seconds. A pending request waits until expires_at; an approved one may be used until
    -- then (set again when it is approved).
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    comment TEXT,
    used_at BIGINT
);
CREATE INDEX IF NOT EXISTS approvals_call ON approvals (issuer, subject, tool, arguments_sha256, created_at);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, created_at);
-- One open request per exact call: concurrent first attempts share it.
CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending ON approvals (issuer, subject, tool, arguments_sha256, policy_version)
    WHERE status = 'pending';
