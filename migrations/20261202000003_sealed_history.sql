-- R-AUD-1..3: the history proves itself (docs/decisions/0017-sealed-history.md,
-- docs/auditing.md).
--
-- R-AUD-1, append-only: triggers refuse UPDATE, DELETE and TRUNCATE on `events` and on the
-- sealing tables, whoever asks (only a superuser can get past them, by disabling triggers, and
-- `etal audit verify` then finds what was changed). The service itself runs as the role
-- `etal_service` (`etal serve` sets it on each connection, ETAL_DB_ROLE), which may only
-- SELECT and INSERT those tables.

CREATE FUNCTION etal_refuse_history_change() RETURNS trigger AS
$$
BEGIN
    RAISE EXCEPTION 'etal: % is append-only (R-AUD-1): % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION etal_refuse_history_change();

-- R-AUD-2: one leaf per event, in the projectors' committed order (the sealer is a reader of
-- the log like them: `etal_projections::sealer`), gap-free from 0. The leaf hash covers every
-- column of the event (store/src/seal/leaf.rs).
CREATE TABLE seal_leaves
(
    leaf_index      bigint PRIMARY KEY CHECK (leaf_index >= 0),
    global_position bigint      NOT NULL UNIQUE,
    transaction_id  bigint      NOT NULL,
    leaf_hash       bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    sealed_at       timestamptz NOT NULL DEFAULT now()
);

-- Perfect subtrees of height 8, 16, 24... (2^height leaves from node_index * 2^height): any
-- subtree hash is then a fold of at most 128 stored hashes.
CREATE TABLE seal_nodes
(
    height     smallint NOT NULL CHECK (height > 0 AND height % 8 = 0),
    node_index bigint   NOT NULL CHECK (node_index >= 0),
    hash       bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (height, node_index)
);

-- R-AUD-3: signed checkpoints (C2SP tlog-checkpoint notes, Ed25519). The key is never here.
CREATE TABLE seal_checkpoints
(
    tree_size bigint PRIMARY KEY CHECK (tree_size >= 0),
    root      bytea       NOT NULL CHECK (length(root) = 32),
    origin    text        NOT NULL,
    key_name  text        NOT NULL,
    note      text        NOT NULL,
    signed_at timestamptz NOT NULL
);

CREATE TRIGGER seal_leaves_append_only BEFORE UPDATE OR DELETE ON seal_leaves
    FOR EACH ROW EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER seal_leaves_no_truncate BEFORE TRUNCATE ON seal_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER seal_nodes_append_only BEFORE UPDATE OR DELETE ON seal_nodes
    FOR EACH ROW EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER seal_nodes_no_truncate BEFORE TRUNCATE ON seal_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER seal_checkpoints_append_only BEFORE UPDATE OR DELETE ON seal_checkpoints
    FOR EACH ROW EXECUTE FUNCTION etal_refuse_history_change();
CREATE TRIGGER seal_checkpoints_no_truncate BEFORE TRUNCATE ON seal_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION etal_refuse_history_change();

-- The service's role (cluster-wide; several databases of one cluster share it). Made once;
-- two migrations racing to make it both succeed.
DO
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'etal_service') THEN
        CREATE ROLE etal_service NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;

-- Its rights in this database: everything on the read models and working tables, SELECT and
-- INSERT only on the history. `etal migrate` calls this after every migration (store/src/db.rs),
-- so tables added later get the same rights.
CREATE FUNCTION etal_grant_service() RETURNS void AS
$$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO etal_service', current_database());
    GRANT USAGE ON SCHEMA public TO etal_service;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO etal_service;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO etal_service;
    REVOKE UPDATE, DELETE, TRUNCATE ON events, seal_leaves, seal_nodes, seal_checkpoints
        FROM etal_service;
    REVOKE ALL ON _sqlx_migrations FROM etal_service;
END;
$$ LANGUAGE plpgsql;

-- R-AUD-3: each checkpoint is also e-mailed to the auditors' addresses (ETAL_AUDITORS_EMAIL), a
-- system message to an address rather than to a person of the platform.
ALTER TABLE system_messages DROP CONSTRAINT system_messages_recipient_kind_check;
ALTER TABLE system_messages ADD CONSTRAINT system_messages_recipient_kind_check
    CHECK (recipient_kind IN ('user', 'producer', 'market', 'address'));
