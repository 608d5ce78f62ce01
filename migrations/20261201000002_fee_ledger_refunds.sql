-- The fee ledger now holds the fees given back and charged again when a refund comes after a
-- sale was credited (R-FEE-4), as the journal always did. The ledger projection is derived
-- from the log: start it again from the beginning so existing rows are recomputed.
TRUNCATE ledger_entries, ledger_postings, ledger_fee_lines, ledger_order_state;
DELETE FROM projector_checkpoints WHERE projection = 'ledger';
