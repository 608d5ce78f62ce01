-- Projection `stock_levels`: each product's stock as the Stock aggregate holds it (R-STK-2):
-- real stock, live reservations (pending or confirmed: both count as ordered), and the product
-- names from the producer accounts. ordered and available are computed at read time.
CREATE TABLE products
(
    product_id  uuid PRIMARY KEY,
    producer_id uuid          NOT NULL,
    name        text          NOT NULL,
    unit        text          NOT NULL,
    price_incl_vat numeric(14, 2) NOT NULL,
    vat_rate    numeric(4, 1) NOT NULL,
    archived    boolean       NOT NULL
);

CREATE INDEX products_producer ON products (producer_id);

CREATE TABLE stock_levels
(
    product_id  uuid PRIMARY KEY,
    -- Known once the producer set the stock.
    producer_id uuid,
    -- NULL: unlimited.
    real        bigint
);

CREATE TABLE stock_reservations
(
    product_id uuid    NOT NULL,
    order_id   uuid    NOT NULL,
    sale_id    uuid    NOT NULL,
    quantity   bigint  NOT NULL,
    confirmed  boolean NOT NULL,
    PRIMARY KEY (product_id, order_id)
);
