-- The outcome of each `etal audit check` (R-PAY-3), for the auditors' page: when, how much was
-- checked, up to where in the log, and the differences found (the first 50, as printed).
CREATE TABLE audit_checks
(
    check_id      uuid PRIMARY KEY,
    ran_at        timestamptz NOT NULL,
    head_position bigint      NOT NULL,
    events        bigint      NOT NULL,
    entries       bigint      NOT NULL,
    fee_lines     bigint      NOT NULL,
    sales         bigint      NOT NULL,
    differences   integer     NOT NULL,
    first_differences jsonb   NOT NULL
);
CREATE INDEX audit_checks_latest ON audit_checks (ran_at DESC);
