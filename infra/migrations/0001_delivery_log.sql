-- The delivery log: one `deliveries` row per (event, webhook) and one `delivery_attempts` row
-- per HTTP attempt. Embedded in the relay with `sqlx::migrate!` and applied by
-- `PostgresDeliveryLog::migrate`, which runs it once, in a transaction; the IF NOT EXISTS
-- clauses let it also be applied by hand to a database that already has part of it.

CREATE TABLE IF NOT EXISTS deliveries (
    event_id         uuid        NOT NULL,
    webhook_id       uuid        NOT NULL,
    tenant           text        NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL
        CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempt_count    integer     NOT NULL DEFAULT 0
        CONSTRAINT deliveries_attempt_count_check CHECK (attempt_count >= 0),
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Also the index that lists one webhook's deliveries newest first: a B-tree on
    -- (webhook_id, event_id) is read backwards for ORDER BY event_id DESC, and event ids are
    -- UUIDv7, so id order is time order.
    CONSTRAINT deliveries_pkey PRIMARY KEY (webhook_id, event_id)
);

-- One webhook's deliveries of one status, newest first.
CREATE INDEX IF NOT EXISTS deliveries_webhook_status_idx
    ON deliveries (webhook_id, status, event_id DESC);

-- A tenant's deliveries over time (the dashboard).
CREATE INDEX IF NOT EXISTS deliveries_tenant_created_idx
    ON deliveries (tenant, created_at DESC);

-- Deliveries waiting for a scheduled retry, by when it is due.
CREATE INDEX IF NOT EXISTS deliveries_retry_due_idx
    ON deliveries (next_attempt_at)
    WHERE status = 'retrying';

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id            bigserial   PRIMARY KEY,
    event_id      uuid        NOT NULL,
    webhook_id    uuid        NOT NULL,
    number        integer     NOT NULL
        CONSTRAINT delivery_attempts_number_check CHECK (number >= 0),
    status_code   integer,
    duration_ms   bigint      NOT NULL
        CONSTRAINT delivery_attempts_duration_check CHECK (duration_ms >= 0),
    error         text,
    response_body text,
    trigger       text        NOT NULL
        CONSTRAINT delivery_attempts_trigger_check CHECK (trigger IN ('scheduled', 'manual')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT delivery_attempts_delivery_fkey FOREIGN KEY (webhook_id, event_id)
        REFERENCES deliveries (webhook_id, event_id) ON DELETE CASCADE
);

-- A delivery's attempts in order; also serves the cascade from `deliveries`.
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery_idx
    ON delivery_attempts (webhook_id, event_id, number, id);
