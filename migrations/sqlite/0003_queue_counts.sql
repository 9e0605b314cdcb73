-- How many removals are queued and running, kept by triggers in the same
-- transaction as every change of a removal's status. The 429 check reads
-- this on every POST and the worker on every wake-up: counting the rows
-- instead costs a walk over the whole queue each time, and in WAL mode a
-- reader whose page cache another connection's commit invalidated reads
-- those pages again, so each POST got slower as the queue grew.
CREATE TABLE queue_counts (
    status   TEXT PRIMARY KEY,
    removals INTEGER NOT NULL
);

INSERT INTO queue_counts (status, removals)
SELECT 'queued', COUNT(*) FROM removals WHERE status = 'queued';
INSERT INTO queue_counts (status, removals)
SELECT 'running', COUNT(*) FROM removals WHERE status = 'running';

-- Only 'queued' and 'running' have a row; other statuses match none.
CREATE TRIGGER removals_counted_on_insert AFTER INSERT ON removals
BEGIN
    UPDATE queue_counts SET removals = removals + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER removals_counted_on_status AFTER UPDATE OF status ON removals
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE queue_counts SET removals = removals - 1 WHERE status = OLD.status;
    UPDATE queue_counts SET removals = removals + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER removals_counted_on_delete AFTER DELETE ON removals
BEGIN
    UPDATE queue_counts SET removals = removals - 1 WHERE status = OLD.status;
END;
