-- An Idempotency-Key is kept with a hash of the request that first used it,
-- so that the same key sent with another request is refused rather than
-- answered with the first one's job. Rows from before have no hash and match
-- any request, as they did.
ALTER TABLE jobs ADD COLUMN request_hash text;

ALTER TABLE batches
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_hash text,
    ADD CONSTRAINT batches_tenant_idempotency_key UNIQUE (tenant, idempotency_key);
