-- R-ORD-8: a customer who buys as a business (restaurant, shop, another producer): its legal
-- identity and billing address, for the invoices of its orders (R-INV-3, R-INV-4).
CREATE TABLE professional_customers
(
    user_id      uuid PRIMARY KEY,
    company_name text        NOT NULL,
    siren        text        NOT NULL,
    vat_number   text,
    address_line text        NOT NULL,
    postcode     text        NOT NULL,
    city         text        NOT NULL,
    country      text        NOT NULL,
    changed_at   timestamptz NOT NULL
);
