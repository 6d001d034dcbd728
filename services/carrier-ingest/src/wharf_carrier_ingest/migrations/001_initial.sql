-- Payloads received from carriers and what became of each.
CREATE TABLE ingests (
    tenant text NOT NULL,
    id uuid NOT NULL,
    carrier text NOT NULL,
    payload_ref text NOT NULL,
    content_type text,
    received_at timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL,
    detail text,
    events int NOT NULL DEFAULT 0,
    duplicates int NOT NULL DEFAULT 0,
    not_found jsonb NOT NULL DEFAULT '[]',
    carrier_errors jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant, id)
);

-- Canonical events, stored once per tenant, carrier and event id.
CREATE TABLE tracking_events (
    tenant text NOT NULL,
    carrier text NOT NULL,
    event_id text NOT NULL,
    tracking_number text NOT NULL,
    occurred_at timestamptz NOT NULL,
    status text NOT NULL,
    classified_by text NOT NULL,
    location jsonb,
    code text,
    description text NOT NULL DEFAULT '',
    incident_reason text,
    operator text,
    time_basis text,
    payload_ref text NOT NULL,
    ingest_id uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, carrier, event_id)
);
CREATE INDEX tracking_events_number ON tracking_events (tenant, carrier, tracking_number, occurred_at);

CREATE TABLE shipments (
    tenant text NOT NULL,
    id uuid NOT NULL,
    carrier text NOT NULL,
    tracking_number text NOT NULL,
    reference text,
    metadata jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending',
    status_at timestamptz,
    status_event_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, carrier, tracking_number)
);
CREATE INDEX shipments_listing ON shipments (tenant, created_at DESC, id DESC);

-- Carrier documents fetched from FTP: one job, one row per shipment.
CREATE TABLE document_jobs (
    tenant text NOT NULL,
    id uuid NOT NULL,
    carrier text NOT NULL,
    status text NOT NULL DEFAULT 'running',
    total int NOT NULL,
    deadline timestamptz,
    manifest_ref text,
    detail text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE document_items (
    job_id uuid NOT NULL,
    tracking_number text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    object_key text,
    reason text,
    PRIMARY KEY (job_id, tracking_number)
);
CREATE INDEX document_items_state ON document_items (job_id, state);
