-- The event index: what lists and counts the events DynamoDB keeps by id only (the events
-- table has no listing GSI, so no partition of it takes more than its share of the writes).
-- One row per event, written when it is stored (relay-local) or dispatched (relay-delivery);
-- event ids are UUIDv7, so id order is time order. Rows past EVENT_RETENTION_DAYS are pruned
-- by maintenance.
CREATE TABLE IF NOT EXISTS event_index (
    id uuid PRIMARY KEY,
    event_type text NOT NULL,
    source text,
    tenant text,
    dispatched boolean NOT NULL DEFAULT false
);

CREATE INDEX IF NOT EXISTS event_index_type_idx ON event_index (event_type, id DESC);
CREATE INDEX IF NOT EXISTS event_index_source_idx ON event_index (source, id DESC) WHERE source IS NOT NULL;
CREATE INDEX IF NOT EXISTS event_index_tenant_idx ON event_index (tenant, id DESC) WHERE tenant IS NOT NULL;
