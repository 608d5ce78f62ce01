-- One flow, one commit (docs/decisions/0008-one-flow-one-commit.md).

-- Idempotency keys are scoped to the caller: the record's key is (scope, key), scope being the
-- caller's user id. Existing rows take the actor recorded with the events they wrote.
ALTER TABLE idempotency_keys ADD COLUMN scope text;
UPDATE idempotency_keys k
SET scope = coalesce((SELECT e.metadata -> 'actor' ->> 'user'
                      FROM events e
                      WHERE e.aggregate_type = k.aggregate_type
                        AND e.aggregate_id = k.aggregate_id
                        AND e.metadata ->> 'idempotency_key' = k.key
                      LIMIT 1), 'unknown');
ALTER TABLE idempotency_keys ALTER COLUMN scope SET NOT NULL;
-- A record now holds the flow's answer, its last position and the outbox messages it owed;
-- an existing record's answer is the command outcome it held.
UPDATE idempotency_keys
SET outcome = jsonb_build_object('result', outcome,
                                 'position', outcome -> 'events' -> -1 -> 'position',
                                 'outbox', '[]'::jsonb);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_key_check;
-- Clients send at most 200 characters; the service's own keys (scheduled:<id>:<step>) may be longer.
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 1000);
-- A flow writes several streams: these name the first one, if any.
ALTER TABLE idempotency_keys ALTER COLUMN aggregate_type DROP NOT NULL;
ALTER TABLE idempotency_keys ALTER COLUMN aggregate_id DROP NOT NULL;

-- The outbox: every call outside the database is a row committed with the change that makes it
-- owed, delivered after commit with the provider idempotency key `etal-<id>`, retried with
-- backoff until acknowledged. A deliverer holds the row locked (FOR UPDATE SKIP LOCKED) while it
-- calls the provider and records the outcome as events in the same transaction; a flow's own
-- rows are due to the worker a few seconds after their commit (the flow delivers them first).
CREATE TABLE outbox
(
    id              uuid PRIMARY KEY,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    result          jsonb,
    correlation_id  uuid
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';

-- Every delivery attempt, successful or not.
CREATE TABLE outbox_attempts
(
    outbox_id uuid        NOT NULL REFERENCES outbox (id),
    attempt   int         NOT NULL,
    at        timestamptz NOT NULL,
    ok        boolean     NOT NULL,
    detail    text        NOT NULL,
    PRIMARY KEY (outbox_id, attempt)
);
