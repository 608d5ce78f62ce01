-- R-NOT: messages to a market's administrators (a producer asks to join or withdraws, a sale is
-- ready to validate), resolved to the administrators when sent; the projection remembers each
-- sale's market.
ALTER TABLE notifications DROP CONSTRAINT notifications_recipient_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_recipient_kind_check
    CHECK (recipient_kind IN ('user', 'producer', 'market'));
CREATE TABLE notification_sales
(
    sale_id uuid PRIMARY KEY,
    market  uuid NOT NULL,
    date    date NOT NULL
);
