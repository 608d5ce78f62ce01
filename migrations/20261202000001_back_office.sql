-- The back office's log-in (ADR 0016): one-time links sent by e-mail or minted by an operator,
-- and sessions kept on the server. Only SHA-256 hashes of the secrets are stored.
CREATE TABLE admin_login_links
(
    token_hash text PRIMARY KEY,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('producer', 'market_admin', 'auditor', 'platform_admin')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE TABLE admin_sessions
(
    session_hash text PRIMARY KEY,
    user_id      uuid        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('producer', 'market_admin', 'auditor', 'platform_admin')),
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    revoked_at   timestamptz,
    flash        text CHECK (length(flash) <= 500)
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id) WHERE revoked_at IS NULL;
