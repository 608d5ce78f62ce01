-- R-PAY-4: producers' bank details. A sole trader's IBAN and name are personal data, so they
-- live here, outside the events; each change is the event BankDetailsChanged (who, when, the
-- masked IBAN and the BIC).
CREATE TABLE bank_accounts
(
    producer_id uuid PRIMARY KEY,
    holder      text        NOT NULL,
    iban        text        NOT NULL,
    bic         text        NOT NULL,
    changed_at  timestamptz NOT NULL,
    changed_by  uuid        NOT NULL
);

-- R-PAY-5 (ETAL_PAYOUTS=sepa): each transfer of a payout attempt, queued for the credit
-- transfer file of the day it was made (the Monday run), with the payee as it was then.
CREATE TABLE sepa_transfers
(
    payout_id      uuid        NOT NULL,
    attempt        integer     NOT NULL,
    producer_id    uuid        NOT NULL,
    amount         numeric     NOT NULL CHECK (amount > 0),
    holder         text        NOT NULL,
    iban           text        NOT NULL,
    bic            text        NOT NULL,
    execution_date date        NOT NULL,
    queued_at      timestamptz NOT NULL,
    PRIMARY KEY (payout_id, attempt)
);
CREATE INDEX sepa_transfers_by_date ON sepa_transfers (execution_date);

-- The pain.001 files written, one per execution date; a file marked sent never changes.
CREATE TABLE sepa_files
(
    message_id     text PRIMARY KEY,
    execution_date date        NOT NULL UNIQUE,
    transfers      integer     NOT NULL,
    control_sum    numeric     NOT NULL,
    xml            text        NOT NULL,
    created_at     timestamptz NOT NULL,
    sent_at        timestamptz,
    sent_by        uuid
);
