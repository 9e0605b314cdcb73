-- Removals: the queue and the audit trail in one table, as on SQLite. The
-- resource itself is kept as JSONB in `doc`; the columns beside it are what
-- queries filter on.
CREATE TABLE removals (
    -- Arrival order: claims follow it within a group, and cursors page by it.
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    group_id     TEXT NOT NULL,
    status       TEXT NOT NULL,
    client       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    doc          JSONB NOT NULL,
    -- What the engine has done so far, including the PATCH it last sent.
    progress     JSONB NOT NULL DEFAULT '{}',
    claimed_by   TEXT,
    -- In the database's clock, which every replica shares; a running removal
    -- past its lease may be taken over.
    lease_until  TIMESTAMPTZ
);

CREATE INDEX removals_status_seq ON removals (status, seq);
CREATE INDEX removals_group_seq ON removals (group_id, seq);
CREATE INDEX removals_created_at ON removals (created_at);
-- The claim looks only at unfinished removals; the audit trail may be long.
CREATE INDEX removals_unfinished ON removals (group_id, seq)
    WHERE status IN ('queued', 'running');
-- `GET /removals?member=` is a containment test on this array.
CREATE INDEX removals_requested_members ON removals
    USING GIN ((doc -> 'requested_members') jsonb_path_ops);

CREATE TABLE idempotency_keys (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    -- Deferred: a key is written before the removal it names, in one
    -- transaction. A pruned removal takes its key with it.
    removal_id  UUID NOT NULL REFERENCES removals (id) ON DELETE CASCADE
                DEFERRABLE INITIALLY DEFERRED,
    -- The group and the parsed body, as canonical JSON.
    fingerprint TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_removal ON idempotency_keys (removal_id);
