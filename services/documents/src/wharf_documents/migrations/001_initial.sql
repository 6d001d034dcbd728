CREATE TABLE templates (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    version int NOT NULL,
    html text NOT NULL,
    css text,
    assets_key text,
    assets_bytes bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name, version)
);

CREATE TABLE batches (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    template_id uuid NOT NULL REFERENCES templates (id),
    total int NOT NULL,
    done int NOT NULL DEFAULT 0,
    failed int NOT NULL DEFAULT 0,
    bundle_format text NOT NULL CHECK (bundle_format IN ('zip', 'pdf')),
    bundle_key text,
    bundle_bytes bigint,
    status text NOT NULL DEFAULT 'rendering'
        CHECK (status IN ('rendering', 'bundling', 'done', 'failed')),
    reason text,
    deadline timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE INDEX batches_tenant ON batches (tenant, created_at);

CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    template_id uuid NOT NULL REFERENCES templates (id),
    data jsonb NOT NULL,
    filename text,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'rendering', 'done', 'failed')),
    reason text,
    detail text,
    attempts int NOT NULL DEFAULT 0,
    pages int,
    bytes bigint,
    object_key text,
    idempotency_key text,
    correlation_id text,
    batch_id uuid REFERENCES batches (id),
    seq int,
    fed boolean NOT NULL DEFAULT true,
    deadline timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    UNIQUE (tenant, idempotency_key)
);

CREATE INDEX jobs_batch_unfed ON jobs (batch_id, seq) WHERE NOT fed;
CREATE INDEX jobs_batch ON jobs (batch_id, seq);
