-- Messages that no event causes (a webhook endpoint disabled after failing for 24 h), written
-- with their delivery in the transaction that decides them; the sender delivers them like the
-- projection's.
CREATE TABLE system_messages
(
    message_id     uuid PRIMARY KEY,
    recipient_kind text        NOT NULL CHECK (recipient_kind IN ('user', 'producer', 'market')),
    recipient      uuid        NOT NULL,
    kind           text        NOT NULL,
    context        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL
);
