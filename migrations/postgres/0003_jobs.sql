-- Jobs: a file sent by a maker, its analysis, where it runs and what happened to it.

CREATE TABLE jobs (
    id                 BIGSERIAL PRIMARY KEY,
    owner_id           BIGINT NOT NULL REFERENCES users (id),
    file_name          TEXT NOT NULL,
    stored_name        TEXT NOT NULL UNIQUE,
    size_bytes         BIGINT NOT NULL,
    sha256             TEXT NOT NULL,
    target_machine_id  BIGINT REFERENCES machines (id),
    target_kind        TEXT,
    priority           BIGINT NOT NULL DEFAULT 0,
    state              TEXT NOT NULL CHECK (state IN ('submitted', 'needs_approval', 'queued', 'running', 'paused', 'done', 'failed', 'cancelled', 'interrupted')),
    state_reason       TEXT NOT NULL DEFAULT '',
    analysis           TEXT,
    estimate_s         BIGINT,
    machine_id         BIGINT REFERENCES machines (id),
    lines_acked        BIGINT NOT NULL DEFAULT 0,
    bytes_acked        BIGINT NOT NULL DEFAULT 0,
    started_at         BIGINT,
    finished_at        BIGINT,
    file_deleted_at    BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_owner ON jobs (owner_id, created_at);

CREATE TABLE job_events (
    id          BIGSERIAL PRIMARY KEY,
    job_id      BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    actor_id    BIGINT REFERENCES users (id),
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job ON job_events (job_id, at);
