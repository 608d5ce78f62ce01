-- Projection `order_recaps`: orders and their lines as placed and adjusted, with the sales and
-- markets they belong to. Normalized: recaps, sign-off lists and dashboard statistics are SQL
-- groupings over these tables (projections/src/order_recaps.rs, dashboard.rs). Ids only, no
-- personal data: names are joined from `people` at read time (design property 10).
CREATE TABLE recap_markets
(
    market_id uuid PRIMARY KEY,
    name      text    NOT NULL,
    amap      boolean NOT NULL
);

CREATE TABLE recap_sales
(
    sale_id   uuid PRIMARY KEY,
    market_id uuid        NOT NULL,
    number    bigint      NOT NULL,
    -- The distribution date (Europe/Paris).
    date      date        NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL,
    amap      boolean     NOT NULL
);

CREATE INDEX recap_sales_date ON recap_sales (date);
CREATE INDEX recap_sales_market ON recap_sales (market_id, date);

CREATE TABLE recap_orders
(
    order_id     uuid PRIMARY KEY,
    sale_id      uuid          NOT NULL,
    market_id    uuid          NOT NULL,
    customer_id  uuid          NOT NULL,
    number       text          NOT NULL,
    payment_mode text          NOT NULL,
    delivery_fee numeric(14, 2) NOT NULL,
    -- What the customer owes for the whole order (lines + delivery fee); 0 once cancelled.
    total        numeric(14, 2) NOT NULL,
    paid         numeric(14, 2) NOT NULL,
    refunded     numeric(14, 2) NOT NULL,
    cancelled    boolean       NOT NULL,
    placed_at    timestamptz   NOT NULL
);

CREATE INDEX recap_orders_sale ON recap_orders (sale_id);
CREATE INDEX recap_orders_market ON recap_orders (market_id);
CREATE INDEX recap_orders_customer ON recap_orders (customer_id);

CREATE TABLE recap_lines
(
    order_id            uuid          NOT NULL,
    line                bigint        NOT NULL,
    sale_id             uuid          NOT NULL,
    catalog_id          uuid          NOT NULL,
    producer_id         uuid          NOT NULL,
    product_id          uuid          NOT NULL,
    name                text          NOT NULL,
    unit                text          NOT NULL,
    unit_price_incl_vat numeric(14, 2) NOT NULL,
    vat_rate            numeric(4, 1) NOT NULL,
    variable_weight     boolean       NOT NULL,
    estimated_weight_kg numeric(12, 3),
    quantity            bigint        NOT NULL,
    -- Actual total weight once weighed.
    weight_kg           numeric(12, 3),
    amount_incl_vat     numeric(14, 2) NOT NULL,
    amount_excl_vat     numeric(14, 2) NOT NULL,
    vat_amount          numeric(14, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE INDEX recap_lines_sale_catalog ON recap_lines (sale_id, catalog_id);
CREATE INDEX recap_lines_producer ON recap_lines (producer_id, sale_id);
CREATE INDEX recap_lines_catalog ON recap_lines (catalog_id);
