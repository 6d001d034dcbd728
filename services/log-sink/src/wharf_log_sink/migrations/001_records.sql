-- Every service's log records, partitioned by day on ts. Partitions are made
-- ahead of time (and on demand) and dropped after the retention period by
-- the service itself; see wharf_log_sink.db. `fields` is the shipped JSON
-- text: it is never filtered on, and text keeps COPY cheap.
--
-- Text search uses a trigram index that maintenance builds on each partition
-- once its day is over: kept up row by row it would halve the ingest rate.
-- Searching the current day scans its partition, narrowed by the other
-- filters.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE records (
    ts timestamptz NOT NULL,
    id uuid NOT NULL,
    level smallint NOT NULL,
    service text COLLATE "C" NOT NULL,
    logger text NOT NULL,
    message text NOT NULL,
    correlation_id text COLLATE "C",
    tenant text COLLATE "C",
    message_id text,
    fields text,
    exception text,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);

CREATE INDEX records_service_ts ON records (service, ts);
CREATE INDEX records_warnings_ts ON records (ts) WHERE level >= 30;
CREATE INDEX records_tenant_ts ON records (tenant, ts) WHERE tenant IS NOT NULL;
CREATE INDEX records_correlation ON records (correlation_id) WHERE correlation_id IS NOT NULL;

-- Records committed but not yet forwarded to CloudWatch Logs (only filled
-- while forwarding is switched on). Rows leave once CloudWatch accepted them.
CREATE TABLE forward_pending (
    ts timestamptz NOT NULL,
    id uuid NOT NULL,
    PRIMARY KEY (ts, id)
);
