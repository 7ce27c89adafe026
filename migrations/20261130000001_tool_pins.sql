-- Tool-definition pinning: per federated server and upstream tool name, the approved definition
-- (canonical JSON and its SHA-256) and, when the server later presents a different one, that
-- one as pending until an operator approves it. Definitions are what a server publishes in
-- tools/list, not secrets: kept in clear so `warden tools diff` can show the change.
CREATE TABLE IF NOT EXISTS tool_pins (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    approved_hash TEXT NOT NULL,
    approved_definition TEXT NOT NULL,
    pending_hash TEXT,
    pending_definition TEXT,
    -- Unix seconds.
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (server, tool)
);
