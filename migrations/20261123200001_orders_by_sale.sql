-- Crediting a validated sale reads the orders placed for it (api/src/app/money.rs).
CREATE INDEX events_order_placed_sale ON events ((payload -> 'OrderPlaced' ->> 'sale'))
    WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced';
