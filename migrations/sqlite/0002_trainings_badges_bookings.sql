-- Trainings and their sessions, badges, calendar settings and machine bookings.

CREATE TABLE lab_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE trainings (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    description      TEXT NOT NULL DEFAULT '',
    validity_months  INTEGER NOT NULL CHECK (validity_months > 0),
    lapse_months     INTEGER CHECK (lapse_months IS NULL OR lapse_months > 0),
    created_at       INTEGER NOT NULL
);

CREATE TABLE training_machines (
    training_id  INTEGER NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    machine_id   INTEGER NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    PRIMARY KEY (training_id, machine_id)
);

CREATE TABLE training_sessions (
    id           INTEGER PRIMARY KEY,
    training_id  INTEGER NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL CHECK (ends_at > starts_at),
    trainer_id   INTEGER NOT NULL REFERENCES users (id),
    capacity     INTEGER NOT NULL CHECK (capacity > 0),
    location     TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

CREATE TABLE enrolments (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER NOT NULL REFERENCES training_sessions (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('enrolled', 'waiting', 'cancelled')),
    attended_at  INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (session_id, user_id)
);

CREATE TABLE badges (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    training_id    INTEGER NOT NULL REFERENCES trainings (id),
    session_id     INTEGER REFERENCES training_sessions (id),
    awarded_by     INTEGER NOT NULL REFERENCES users (id),
    awarded_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    revoked_at     INTEGER,
    revoked_by     INTEGER REFERENCES users (id),
    revoke_reason  TEXT,
    public_token   TEXT NOT NULL UNIQUE
);
CREATE INDEX badges_user ON badges (user_id);

ALTER TABLE users ADD COLUMN calendar_token TEXT;
CREATE UNIQUE INDEX users_calendar_token ON users (calendar_token);

CREATE TABLE bookings (
    id             INTEGER PRIMARY KEY,
    machine_id     INTEGER NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    user_id        INTEGER REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('booking', 'block')),
    starts_at      INTEGER NOT NULL,
    ends_at        INTEGER NOT NULL CHECK (ends_at > starts_at),
    supervised     INTEGER NOT NULL DEFAULT 0,
    note           TEXT NOT NULL DEFAULT '',
    created_by     INTEGER NOT NULL REFERENCES users (id),
    created_at     INTEGER NOT NULL,
    cancelled_at   INTEGER,
    checked_in_at  INTEGER,
    no_show_at     INTEGER
);
CREATE INDEX bookings_machine_time ON bookings (machine_id, starts_at);
CREATE INDEX bookings_user ON bookings (user_id, starts_at);

-- Two live bookings of one machine never overlap. SQLite runs this trigger inside the
-- INSERT, under the database's single write lock, so no concurrent request can slip
-- between the check and the write.
CREATE TRIGGER bookings_no_overlap BEFORE INSERT ON bookings
WHEN NEW.cancelled_at IS NULL AND NEW.no_show_at IS NULL AND EXISTS (
    SELECT 1 FROM bookings b
    WHERE b.machine_id = NEW.machine_id
      AND b.cancelled_at IS NULL AND b.no_show_at IS NULL
      AND b.starts_at < NEW.ends_at AND NEW.starts_at < b.ends_at
)
BEGIN
    SELECT RAISE(ABORT, 'slot_taken');
END;
