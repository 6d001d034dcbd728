-- One row per delivered shipment the customer was told about. No unique key
-- on purpose: handled_messages is what keeps a redelivered event from adding
-- a second row, and the tests count rows to prove it.
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    tenant text,
    shipment_id uuid NOT NULL,
    tracking_number text NOT NULL,
    reference text,
    delivered_at timestamptz NOT NULL,
    notified_at timestamptz NOT NULL DEFAULT now()
);
