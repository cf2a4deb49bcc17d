-- Trainings and their sessions, badges, calendar settings and machine bookings.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE lab_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE trainings (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    description      TEXT NOT NULL DEFAULT '',
    validity_months  BIGINT NOT NULL CHECK (validity_months > 0),
    lapse_months     BIGINT CHECK (lapse_months IS NULL OR lapse_months > 0),
    created_at       BIGINT NOT NULL
);

CREATE TABLE training_machines (
    training_id  BIGINT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    machine_id   BIGINT NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    PRIMARY KEY (training_id, machine_id)
);

CREATE TABLE training_sessions (
    id           BIGSERIAL PRIMARY KEY,
    training_id  BIGINT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT NOT NULL CHECK (ends_at > starts_at),
    trainer_id   BIGINT NOT NULL REFERENCES users (id),
    capacity     BIGINT NOT NULL CHECK (capacity > 0),
    location     TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);

CREATE TABLE enrolments (
    id           BIGSERIAL PRIMARY KEY,
    session_id   BIGINT NOT NULL REFERENCES training_sessions (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('enrolled', 'waiting', 'cancelled')),
    attended_at  BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (session_id, user_id)
);

CREATE TABLE badges (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    training_id    BIGINT NOT NULL REFERENCES trainings (id),
    session_id     BIGINT REFERENCES training_sessions (id),
    awarded_by     BIGINT NOT NULL REFERENCES users (id),
    awarded_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    revoked_by     BIGINT REFERENCES users (id),
    revoke_reason  TEXT,
    public_token   TEXT NOT NULL UNIQUE
);
CREATE INDEX badges_user ON badges (user_id);

ALTER TABLE users ADD COLUMN calendar_token TEXT;
CREATE UNIQUE INDEX users_calendar_token ON users (calendar_token);

CREATE TABLE bookings (
    id             BIGSERIAL PRIMARY KEY,
    machine_id     BIGINT NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    user_id        BIGINT REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('booking', 'block')),
    starts_at      BIGINT NOT NULL,
    ends_at        BIGINT NOT NULL CHECK (ends_at > starts_at),
    supervised     BIGINT NOT NULL DEFAULT 0,
    note           TEXT NOT NULL DEFAULT '',
    created_by     BIGINT NOT NULL REFERENCES users (id),
    created_at     BIGINT NOT NULL,
    cancelled_at   BIGINT,
    checked_in_at  BIGINT,
    no_show_at     BIGINT,
    -- Two live bookings of one machine never overlap, whatever the concurrency: the
    -- exclusion constraint is checked by PostgreSQL itself at insert time.
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
        machine_id WITH =,
        int8range(starts_at, ends_at) WITH &&
    ) WHERE (cancelled_at IS NULL AND no_show_at IS NULL)
);
CREATE INDEX bookings_user ON bookings (user_id, starts_at);
