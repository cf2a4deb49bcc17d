-- Login throttling by counters reserved before a secret is checked, and a record of what was
-- done to accounts (credential changes and resets, API keys created and revoked).
--
-- `login_throttle` holds one row per key ('user:<name>' or 'addr:<address>'): the failures
-- counted since `window_start`. A login adds one to both of its rows in one transaction
-- before argon2 runs, and gives it back when the secret was right; the row lock taken by
-- the upsert makes parallel guesses wait for each other instead of all reading the same
-- count. The failures of the old table are not carried over: at worst a throttle restarts.
DROP TABLE login_failures;

CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL CHECK (failures >= 0)
);
CREATE INDEX login_throttle_window ON login_throttle (window_start);

-- `actor_id` is who did it (NULL: the command line or the system), `user_id` whose account.
CREATE TABLE account_events (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    actor_id   INTEGER REFERENCES users (id) ON DELETE SET NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('secret_changed', 'secret_reset', 'api_key_created', 'api_key_revoked')),
    detail     TEXT NOT NULL DEFAULT '',
    at         INTEGER NOT NULL
);
CREATE INDEX account_events_user ON account_events (user_id, at);
