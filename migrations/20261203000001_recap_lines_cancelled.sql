-- Each recap line carries whether its order is cancelled, so a live batch recomputes a touched
-- (sale, catalog, product) group from that group's lines alone, without looking up the order
-- of every line (the largest cost of a live batch of order_recaps).
ALTER TABLE recap_lines ADD COLUMN cancelled boolean NOT NULL DEFAULT false;
UPDATE recap_lines l SET cancelled = true
FROM recap_orders o
WHERE o.order_id = l.order_id AND o.cancelled;
