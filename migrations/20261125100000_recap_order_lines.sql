-- Projection `order_recaps`, faster recap by customer (R-SAL-5): each order's live lines
-- (quantity above zero), by line number, as one JSON array of arrays
--   [line, catalog_id, product_id, name, unit, quantity, weight in grams or null,
--    unit price incl. VAT in cents, amount incl. VAT in cents]
-- so a page of 100 orders reads 100 rows instead of 1,000 line rows (ADR 0007). Amounts and
-- weights are integers (cents, grams): exact, never a JSON float. Kept as text (built by
-- `ORDER_LINES_SQL` in projections/src/order_recaps.rs), compared as text by `verify`.
CREATE TABLE recap_order_lines
(
    order_id uuid PRIMARY KEY,
    lines    text NOT NULL
);

-- Existing databases: fill it as the projection would have (same expression).
INSERT INTO recap_order_lines (order_id, lines)
SELECT l.order_id,
       json_agg(json_build_array(l.line, l.catalog_id, l.product_id, l.name, l.unit, l.quantity,
                                 (l.weight_kg * 1000)::bigint, (l.unit_price_incl_vat * 100)::bigint,
                                 (l.amount_incl_vat * 100)::bigint) ORDER BY l.line)::text
FROM recap_lines l
WHERE l.quantity > 0
GROUP BY l.order_id;
