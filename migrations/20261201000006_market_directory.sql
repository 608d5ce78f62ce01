-- R-SAL-8 / R-CAT-5: the market directory (projection `directory`).
-- A GiST index on each market's point answers the bounding box that prefilters a search; the
-- great-circle distance is computed on the candidates (docs/decisions/0010-market-directory.md).
-- Built-in types only: no extension to create.

-- Where each market is (its LocationSet events).
CREATE TABLE market_places
(
    market_id   uuid PRIMARY KEY,
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    commune     text             NOT NULL,
    -- The commune as searched: lower case, hyphens and apostrophes as spaces.
    commune_key text             NOT NULL
);
-- An expression index (a stored point column would have no equality, which verify needs).
CREATE INDEX market_places_position ON market_places USING gist (point(lon, lat));
CREATE INDEX market_places_commune ON market_places (commune_key);

-- The catalogs linked to each market (R-CAT-4), for "the producers selling there" and "the
-- markets my catalogs are linked to".
CREATE TABLE catalog_links
(
    market_id   uuid NOT NULL,
    catalog_id  uuid NOT NULL,
    producer_id uuid NOT NULL,
    PRIMARY KEY (market_id, catalog_id)
);
CREATE INDEX catalog_links_producer ON catalog_links (producer_id);

-- The customers who ordered at each market (its card's customers count).
CREATE TABLE market_customers
(
    market_id   uuid NOT NULL,
    customer_id uuid NOT NULL,
    PRIMARY KEY (market_id, customer_id)
);

-- Proposals of catalogs to markets (R-CAT-5); their messages stay in the proposal's stream.
CREATE TABLE proposals
(
    proposal_id uuid PRIMARY KEY,
    market_id   uuid        NOT NULL,
    catalog_id  uuid        NOT NULL,
    producer_id uuid        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('open', 'accepted', 'declined', 'withdrawn')),
    messages    integer     NOT NULL,
    opened_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX proposals_market ON proposals (market_id, updated_at DESC);
CREATE INDEX proposals_producer ON proposals (producer_id, updated_at DESC);

-- What each person acts for (`me`): producer accounts (owner or collaborator), markets
-- administered, memberships; and each producer's catalogs.
CREATE TABLE user_roles
(
    user_id   uuid NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('producer', 'market', 'member')),
    target_id uuid NOT NULL,
    PRIMARY KEY (user_id, kind, target_id)
);
CREATE TABLE producer_catalogs
(
    producer_id uuid NOT NULL,
    catalog_id  uuid NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (producer_id, catalog_id)
);
-- A customer's own orders, latest first (`me { orders }`): replaces the index by customer alone.
DROP INDEX recap_orders_customer;
CREATE INDEX recap_orders_customer ON recap_orders (customer_id, placed_at DESC, order_id);
