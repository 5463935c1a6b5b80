-- The dashboard's events pages: the events a tenant's webhooks have deliveries of, newest
-- first (event ids are UUIDv7, so id order is time order), and one event's deliveries.
CREATE INDEX IF NOT EXISTS deliveries_tenant_event_idx
    ON deliveries (tenant, event_type, event_id DESC);

CREATE INDEX IF NOT EXISTS deliveries_tenant_event_id_idx
    ON deliveries (tenant, event_id DESC);
