-- Accounts, sessions, API keys, login throttling and the machines registry.
-- Times are Unix seconds (BIGINT), so the same queries serve SQLite and PostgreSQL.

CREATE TABLE users (
    id              BIGSERIAL PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    email           TEXT,
    role            TEXT NOT NULL CHECK (role IN ('member', 'trainer', 'manager', 'admin')),
    lang            TEXT NOT NULL DEFAULT 'fr' CHECK (lang IN ('fr', 'en')),
    credential_kind TEXT NOT NULL CHECK (credential_kind IN ('password', 'pin')),
    secret_hash     TEXT NOT NULL,
    disabled_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE TABLE login_failures (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT NOT NULL,
    ip          TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_ip ON login_failures (ip, at);

CREATE TABLE machines (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    kind               TEXT NOT NULL CHECK (kind IN ('fdm_printer', 'laser_cutter', 'embroidery', 'cnc_mill', 'vinyl_cutter', 'other')),
    connection         TEXT NOT NULL CHECK (connection IN ('serial_marlin', 'serial_grbl', 'octoprint', 'moonraker', 'manual')),
    serial_port        TEXT,
    baud               BIGINT,
    url                TEXT,
    api_key            TEXT,
    profile            TEXT NOT NULL,
    location           TEXT NOT NULL DEFAULT '',
    required_training  TEXT NOT NULL DEFAULT '',
    state              TEXT NOT NULL CHECK (state IN ('offline', 'idle', 'busy', 'paused', 'error', 'to_check', 'maintenance', 'disabled')),
    state_reason       TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
