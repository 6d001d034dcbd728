-- A replay skips events that already have a delivery pending to the endpoint.
CREATE INDEX deliveries_pending_by_event ON deliveries (endpoint_id, event_id)
    WHERE status = 'pending';
