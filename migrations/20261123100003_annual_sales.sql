-- Projection `annual_sales`: a producer's sales per calendar year (R-ACC-4), per order, AMAP and
-- non-AMAP apart, and the cap in force at the latest reservation.
CREATE TABLE annual_sales_orders
(
    producer_id uuid          NOT NULL,
    year        integer       NOT NULL,
    order_id    uuid          NOT NULL,
    amount      numeric(14, 2) NOT NULL,
    amap        boolean       NOT NULL,
    confirmed   boolean       NOT NULL,
    PRIMARY KEY (producer_id, year, order_id)
);

CREATE TABLE annual_sales_caps
(
    producer_id uuid    NOT NULL,
    year        integer NOT NULL,
    -- NULL: no cap.
    cap         numeric(14, 2),
    PRIMARY KEY (producer_id, year)
);
