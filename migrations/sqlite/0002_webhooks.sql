-- The webhook outbox: one row per event, written in the transaction that
-- finishes its removal, and drained by the webhook task.
CREATE TABLE webhook_deliveries (
    -- Insertion order: the list's "newest first" and its cursor.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    -- The `webhook-id` header: the same on every attempt, so receivers can
    -- drop the duplicates that at-least-once delivery brings.
    webhook_id      TEXT NOT NULL UNIQUE,
    -- One event per finished removal, even if it were saved twice.
    removal_id      TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    -- The exact body sent (and signed) on every attempt.
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- Unix milliseconds; NULL once delivered or dead. While an attempt is in
    -- flight it is pushed past the attempt's timeout, so nobody claims the
    -- delivery twice.
    next_attempt_at INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_status_seq ON webhook_deliveries (status, seq);
