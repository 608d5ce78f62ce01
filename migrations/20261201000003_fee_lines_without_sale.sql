-- Subscriptions and per-period fees (R-ACC-3, R-FEE-5) are billed to a producer without a sale
-- (and, for a subscription, without a market): their fee lines have neither.
ALTER TABLE ledger_fee_lines ALTER COLUMN market_id DROP NOT NULL;
ALTER TABLE ledger_fee_lines ALTER COLUMN sale_id DROP NOT NULL;
