-- What an ingest changed, and the tracking numbers its events named, for its status.
ALTER TABLE ingests
    ADD COLUMN status_changes int NOT NULL DEFAULT 0,
    ADD COLUMN tracking jsonb NOT NULL DEFAULT '[]';

-- Records past their retention are deleted by receipt time. Rows arrive in
-- about that order, so a BRIN index finds them while costing inserts next to
-- nothing, unlike a B-tree on the ingest path.
CREATE INDEX ingests_received_at ON ingests USING brin (received_at);
