-- R-CAT-2: recaps show the producer's unit price beside the customer's when a catalog adds fees
-- into its prices. The order_recaps projection is derived from the log: start it again from the
-- beginning so every line carries the new column (and `recap_order_lines` its new element).
ALTER TABLE recap_lines ADD COLUMN producer_unit_price_incl_vat numeric(14, 2);
TRUNCATE recap_markets, recap_sales, recap_orders, recap_lines, recap_participations,
    recap_products, recap_order_lines;
DELETE FROM projector_checkpoints WHERE projection = 'order_recaps';
