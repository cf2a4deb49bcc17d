-- Jobs: a file sent by a maker, its analysis, where it runs and what happened to it.

CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY,
    owner_id           INTEGER NOT NULL REFERENCES users (id),
    file_name          TEXT NOT NULL,
    stored_name        TEXT NOT NULL UNIQUE,
    size_bytes         INTEGER NOT NULL,
    sha256             TEXT NOT NULL,
    target_machine_id  INTEGER REFERENCES machines (id),
    target_kind        TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    state              TEXT NOT NULL CHECK (state IN ('submitted', 'needs_approval', 'queued', 'running', 'paused', 'done', 'failed', 'cancelled', 'interrupted')),
    state_reason       TEXT NOT NULL DEFAULT '',
    analysis           TEXT,
    estimate_s         INTEGER,
    machine_id         INTEGER REFERENCES machines (id),
    lines_acked        INTEGER NOT NULL DEFAULT 0,
    bytes_acked        INTEGER NOT NULL DEFAULT 0,
    started_at         INTEGER,
    finished_at        INTEGER,
    file_deleted_at    INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_owner ON jobs (owner_id, created_at);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    actor_id    INTEGER REFERENCES users (id),
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job ON job_events (job_id, at);
