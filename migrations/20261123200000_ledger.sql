-- The double-entry ledger (design property 9, R-PAY-3), a projection of order and producer
-- balance events. Entry ids come from the source event (stream:aggregate:sequence[:part]) and
-- dates from the events, so a rebuild gives the same rows.
CREATE TABLE ledger_entries
(
    entry_id        text   NOT NULL PRIMARY KEY,
    global_position bigint NOT NULL,
    source_type     text   NOT NULL,
    source_id       text   NOT NULL,
    sequence        bigint NOT NULL,
    entry_date      date   NOT NULL,
    available_on    date,
    description     text   NOT NULL,
    sale_id         uuid,
    market_id       uuid,
    producer_id     uuid
);
CREATE INDEX ledger_entries_date ON ledger_entries (entry_date, entry_id);
CREATE INDEX ledger_entries_sale ON ledger_entries (sale_id);

-- One debit or credit of an entry. `account` is the kind (CustomerPayments, ProducerPayable...),
-- `party` the producer or market it belongs to, if any.
CREATE TABLE ledger_postings
(
    entry_id   text          NOT NULL,
    line       int           NOT NULL,
    entry_date date          NOT NULL,
    account    text          NOT NULL,
    party      uuid,
    debit      numeric(14, 2) NOT NULL CHECK (debit >= 0),
    credit     numeric(14, 2) NOT NULL CHECK (credit >= 0),
    sale_id    uuid,
    PRIMARY KEY (entry_id, line)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account, party, entry_date);

-- Every fee line charged, with the terms that produced it (R-FEE-3): the fee ledger.
CREATE TABLE ledger_fee_lines
(
    entry_id        text          NOT NULL,
    line            int           NOT NULL,
    entry_date      date          NOT NULL,
    producer_id     uuid          NOT NULL,
    market_id       uuid          NOT NULL,
    sale_id         uuid          NOT NULL,
    rule_id         text          NOT NULL,
    rule_version    int           NOT NULL,
    beneficiary     text          NOT NULL,
    base_kind       text          NOT NULL,
    base_amount     numeric(14, 2) NOT NULL,
    rate            numeric       NOT NULL,
    fixed_part      numeric(14, 2) NOT NULL,
    vat_rate        text          NOT NULL,
    amount_excl_vat numeric(14, 2) NOT NULL,
    vat             numeric(14, 2) NOT NULL,
    amount_incl_vat numeric(14, 2) NOT NULL,
    PRIMARY KEY (entry_id, line)
);
CREATE INDEX ledger_fee_lines_producer ON ledger_fee_lines (producer_id, entry_date);
CREATE INDEX ledger_fee_lines_market ON ledger_fee_lines (market_id, entry_date);
CREATE INDEX ledger_fee_lines_sale ON ledger_fee_lines (sale_id);

-- The projection's working state: each order's money, to attribute payments and refunds.
CREATE TABLE ledger_order_state
(
    order_id text  NOT NULL PRIMARY KEY,
    state    jsonb NOT NULL
);
