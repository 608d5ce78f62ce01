-- The event store. Columns of postgres-es's `events` table, plus a gap-free global order.
-- Readers take rows with transaction_id < pg_snapshot_xmin(pg_current_snapshot()), ordered by
-- (transaction_id, global_position): see docs/decisions/0001-global-order.md.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigserial                    NOT NULL,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- Snapshots: one row per aggregate, replaced in the transaction that appends the events it covers.
CREATE TABLE snapshots
(
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL,
    state_version  int         NOT NULL,
    payload        jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Idempotency: the first outcome of a command, written in the same transaction as its events.
CREATE TABLE idempotency_keys
(
    key            text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    command_hash   text        NOT NULL,
    outcome        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL
);

-- Projector checkpoints: the last (transaction_id, global_position) applied, advanced in the
-- transaction that applies the batch.
CREATE TABLE projector_checkpoints
(
    projection    text PRIMARY KEY,
    last_txid     bigint      NOT NULL DEFAULT 0,
    last_position bigint      NOT NULL DEFAULT 0,
    events_applied bigint     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Durable scheduled commands: executed exactly once (see store/src/scheduler.rs).
CREATE TABLE scheduled_commands
(
    id          uuid PRIMARY KEY,
    kind        text        NOT NULL,
    dedupe_key  text        NOT NULL UNIQUE,
    payload     jsonb       NOT NULL,
    due_at      timestamptz NOT NULL,
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts    int         NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL,
    executed_at timestamptz,
    outcome     jsonb
);

CREATE INDEX scheduled_commands_due ON scheduled_commands (due_at) WHERE status = 'pending';

-- Wake readers at commit.
CREATE FUNCTION notify_events() RETURNS trigger AS
$$
BEGIN
    PERFORM pg_notify('etal_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_notify
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_events();
