CREATE TABLE endpoints (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    url text NOT NULL,
    event_types text[] NOT NULL,
    -- Needed in the clear to sign each delivery.
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX endpoints_by_tenant ON endpoints (tenant) WHERE deleted_at IS NULL;

-- Every event delivered to a tenant, kept for replay.
CREATE TABLE events (
    tenant text NOT NULL,
    id uuid NOT NULL,
    type text NOT NULL,
    payload text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
CREATE INDEX events_by_time ON events (tenant, occurred_at);

CREATE TABLE deliveries (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    endpoint_id uuid NOT NULL REFERENCES endpoints (id),
    event_id uuid NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0,
    replay boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_error text
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);

CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES deliveries (id),
    endpoint_id uuid NOT NULL,
    tenant text NOT NULL,
    attempt int NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code int,
    error text,
    duration_ms double precision NOT NULL
);
CREATE INDEX attempts_by_endpoint ON attempts (endpoint_id, id DESC);
