-- Removals: the queue and the audit trail in one table. The resource itself
-- is kept as JSON in `doc`; the columns beside it are what queries filter on.
CREATE TABLE removals (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    group_id     TEXT NOT NULL,
    status       TEXT NOT NULL,
    client       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    completed_at TEXT,
    doc          TEXT NOT NULL,
    -- What the engine has done so far, including the PATCH it last sent.
    progress     TEXT NOT NULL DEFAULT '{}',
    claimed_by   TEXT,
    -- Unix milliseconds; a running removal past its lease may be taken over.
    lease_until  INTEGER
);

CREATE INDEX removals_status_seq ON removals (status, seq);
CREATE INDEX removals_group_seq ON removals (group_id, seq);
CREATE INDEX removals_created_at ON removals (created_at);

CREATE TABLE idempotency_keys (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    removal_id  TEXT NOT NULL,
    -- The group and the parsed body, as canonical JSON.
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (client, key)
);
