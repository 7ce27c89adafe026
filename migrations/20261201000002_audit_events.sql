-- The audit trail's database sink: every record (event or checkpoint) as written, chained,
-- with the fields queries filter on in their own columns. `record` is the canonical JSON line
-- the chain hashed, so `warden audit verify --database` checks exactly what was written.
CREATE TABLE IF NOT EXISTS audit_records (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    issuer TEXT,
    tenant TEXT,
    client_id TEXT,
    method TEXT,
    tool TEXT,
    server TEXT,
    decision TEXT,
    reason TEXT,
    record TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts);
CREATE INDEX IF NOT EXISTS audit_records_subject ON audit_records (subject, ts);
CREATE INDEX IF NOT EXISTS audit_records_tool ON audit_records (tool, ts);
