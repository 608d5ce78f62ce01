-- Projection `order_recaps`, faster recaps (R-SAL-5): the catalogs taking part in each sale, and
-- the recap by product kept pre-aggregated per (sale, catalog, product, VAT rate), so a recap
-- request reads O(catalogs + products) rows and loads no aggregate.

-- The catalogs taking part in a sale, and whose they are (the Sale's participations).
CREATE TABLE recap_participations
(
    sale_id     uuid NOT NULL,
    catalog_id  uuid NOT NULL,
    producer_id uuid NOT NULL,
    PRIMARY KEY (sale_id, catalog_id)
);

-- The lines of the live orders (not cancelled, quantity above zero) grouped per sale, catalog,
-- product and VAT rate: what `recap_by_product` used to compute from `recap_lines` at query
-- time, with the same expressions (projections/src/order_recaps.rs, `GROUP_SQL`).
CREATE TABLE recap_products
(
    sale_id         uuid           NOT NULL,
    catalog_id      uuid           NOT NULL,
    product_id      uuid           NOT NULL,
    vat_rate        numeric(4, 1)  NOT NULL,
    -- min() over the lines (a product renamed during a sale keeps one name).
    name            text           NOT NULL,
    unit            text           NOT NULL,
    quantity        bigint         NOT NULL,
    -- Distinct live orders with a line of this product.
    orders          bigint         NOT NULL,
    -- Total weight of the weighed lines (NULL: nothing weighed).
    weighed_kg      numeric(14, 3),
    lines_to_weigh  bigint         NOT NULL,
    amount_incl_vat numeric(14, 2) NOT NULL,
    amount_excl_vat numeric(14, 2) NOT NULL,
    vat_amount      numeric(14, 2) NOT NULL,
    PRIMARY KEY (sale_id, catalog_id, product_id, vat_rate)
);

-- Recomputing the groups a batch touches; paging orders by number.
CREATE INDEX recap_lines_product ON recap_lines (sale_id, catalog_id, product_id);
CREATE INDEX recap_orders_sale_number ON recap_orders (sale_id, number, order_id);

-- Existing databases: fill both tables as the projection would have. The groups come from the
-- projected lines (consistent with the projection's checkpoint); the participations from the
-- sale events, last event per (sale, catalog) wins (events past the checkpoint are applied again
-- by the projector, in order, to the same end state).
INSERT INTO recap_products (sale_id, catalog_id, product_id, vat_rate, name, unit, quantity, orders,
                            weighed_kg, lines_to_weigh, amount_incl_vat, amount_excl_vat, vat_amount)
SELECT l.sale_id, l.catalog_id, l.product_id, l.vat_rate, min(l.name), min(l.unit), sum(l.quantity)::bigint,
       count(DISTINCT l.order_id), sum(l.weight_kg),
       count(*) FILTER (WHERE l.variable_weight AND l.weight_kg IS NULL),
       sum(l.amount_incl_vat), sum(l.amount_excl_vat), sum(l.vat_amount)
FROM recap_lines l
         JOIN recap_orders o ON o.order_id = l.order_id AND o.sale_id = l.sale_id
WHERE NOT o.cancelled
  AND l.quantity > 0
GROUP BY l.sale_id, l.catalog_id, l.product_id, l.vat_rate;

INSERT INTO recap_participations (sale_id, catalog_id, producer_id)
SELECT sale_id, catalog_id, producer_id
FROM (SELECT DISTINCT ON (e.aggregate_id, p ->> 'catalog') e.aggregate_id::uuid AS sale_id,
                                                           (p ->> 'catalog')::uuid AS catalog_id,
                                                           (p ->> 'producer')::uuid AS producer_id,
                                                           e.event_type
      FROM events e,
           LATERAL (SELECT coalesce(e.payload -> 'ProducerParticipated',
                                    e.payload -> 'ParticipationWithdrawn') AS p) x
      WHERE e.aggregate_type = 'sale'
        AND e.event_type IN ('ProducerParticipated', 'ParticipationWithdrawn')
      ORDER BY e.aggregate_id, p ->> 'catalog', e.sequence DESC) last
WHERE event_type = 'ProducerParticipated';
