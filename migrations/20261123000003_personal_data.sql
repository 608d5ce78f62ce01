-- Personal data lives here, never in event payloads (design property 10, R-ACC-6): events carry
-- only ids. Erasing a person blanks these rows; the money history in the events stays whole and
-- readers show "erased customer".
CREATE TABLE people
(
    user_id      uuid PRIMARY KEY,
    display_name text CHECK (length(display_name) <= 200),
    email        text CHECK (length(email) <= 320),
    phone        text CHECK (length(phone) <= 40),
    created_at   timestamptz NOT NULL,
    erased_at    timestamptz
);

-- Delivery addresses referenced by orders (`address_ref`).
CREATE TABLE addresses
(
    address_ref uuid PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES people (user_id),
    address     text CHECK (length(address) <= 1000),
    created_at  timestamptz NOT NULL,
    erased_at   timestamptz
);

CREATE INDEX addresses_user ON addresses (user_id);
