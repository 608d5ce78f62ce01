-- R-NOT (webhooks): the events integrators may follow, with their owners (the market, the
-- producers), written by the `notifications` projection (deterministic: rebuilt the same).
CREATE TABLE webhook_events
(
    txid        bigint      NOT NULL,
    position    bigint      NOT NULL,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    owners      uuid[]      NOT NULL,
    body        jsonb       NOT NULL,
    PRIMARY KEY (txid, position)
);
ALTER TABLE notification_orders ADD COLUMN producers uuid[] NOT NULL DEFAULT '{}';

-- Endpoints registered by a producer's owner or a market's administrator.
CREATE TABLE webhook_endpoints
(
    endpoint_id     uuid PRIMARY KEY,
    owner_kind      text        NOT NULL CHECK (owner_kind IN ('producer', 'market')),
    owner_id        uuid        NOT NULL,
    url             text        NOT NULL,
    secret          text        NOT NULL,
    event_types     text[]      NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    created_by      uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    disabled_at     timestamptz,
    disabled_reason text
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner_id);

-- One delivery per endpoint and event, in the log's order; the sender's rows.
CREATE TABLE webhook_deliveries
(
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    txid             bigint      NOT NULL,
    position         bigint      NOT NULL,
    event_id         text        NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    first_attempt_at timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    PRIMARY KEY (endpoint_id, txid, position)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, txid, position) WHERE status = 'pending';

CREATE TABLE webhook_cursor
(
    id       integer PRIMARY KEY CHECK (id = 1),
    txid     bigint NOT NULL,
    position bigint NOT NULL
);
INSERT INTO webhook_cursor VALUES (1, 0, 0);
