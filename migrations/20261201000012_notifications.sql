-- R-NOT-1: the messages the log calls for, as a projection (`notifications`): one row per
-- recipient and cause, its id derived from both, so a rebuild writes the same rows and a crash
-- never loses one (the rows commit with the projection's checkpoint).
CREATE TABLE notifications
(
    message_id     uuid PRIMARY KEY,
    -- 'user' (a person) or 'producer' (the account's owner, resolved when sent)
    recipient_kind text        NOT NULL CHECK (recipient_kind IN ('user', 'producer')),
    recipient      uuid        NOT NULL,
    kind           text        NOT NULL,
    -- the causing event: aggregate type, id and sequence
    cause          text        NOT NULL,
    txid           bigint      NOT NULL,
    position       bigint      NOT NULL,
    -- the facts the events give the message (amounts, numbers, ids)
    context        jsonb       NOT NULL,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX notifications_order ON notifications (txid, position);

-- The projection's memory of orders (their customer, number, sale, market, line names).
CREATE TABLE notification_orders
(
    order_id uuid PRIMARY KEY,
    customer uuid  NOT NULL,
    number   text  NOT NULL,
    sale     uuid  NOT NULL,
    market   uuid  NOT NULL,
    lines    jsonb NOT NULL
);

-- The sender's side, never rebuilt: one delivery per message, its attempts and outcome.
CREATE TABLE notification_deliveries
(
    message_id      uuid PRIMARY KEY,
    status          text        NOT NULL CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    address         text,
    last_error      text,
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE notification_attempts
(
    message_id uuid        NOT NULL,
    attempt    integer     NOT NULL,
    at         timestamptz NOT NULL,
    outcome    text        NOT NULL,
    error      text,
    PRIMARY KEY (message_id, attempt)
);

-- How far the sender has taken new messages in (the projection's order).
CREATE TABLE notification_cursor
(
    id       integer PRIMARY KEY CHECK (id = 1),
    txid     bigint NOT NULL,
    position bigint NOT NULL
);
INSERT INTO notification_cursor VALUES (1, 0, 0);

-- An address that bounced (a permanent SMTP refusal): nothing more is sent to it.
CREATE TABLE email_bounces
(
    address text PRIMARY KEY,
    at      timestamptz NOT NULL,
    reason  text        NOT NULL
);

-- What each person chose not to receive (the legal messages always go).
CREATE TABLE notification_preferences
(
    user_id uuid    NOT NULL,
    kind    text    NOT NULL,
    enabled boolean NOT NULL,
    PRIMARY KEY (user_id, kind)
);
