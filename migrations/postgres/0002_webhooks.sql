-- The webhook outbox, as on SQLite: one row per event, written in the
-- transaction that finishes its removal, drained by every replica's webhook
-- task (claims skip rows another replica holds).
CREATE TABLE webhook_deliveries (
    -- Insertion order: the list's "newest first" and its cursor.
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    -- The `webhook-id` header, the same on every attempt.
    webhook_id      TEXT NOT NULL UNIQUE,
    -- One event per finished removal, even if it were saved twice.
    removal_id      UUID NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    -- The exact body sent (and signed) on every attempt.
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- NULL once delivered or dead; pushed past the attempt's timeout while an
    -- attempt is in flight, so nobody claims the delivery twice.
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_status_seq ON webhook_deliveries (status, seq);
