-- What a printer's firmware reported of its motion limits (Marlin's M503 report, read when
-- a job opens the link), kept for the manager to adopt into the machine's profile. One row
-- per machine: the latest report.
CREATE TABLE machine_reported_limits (
    machine_id  BIGINT PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    limits      TEXT NOT NULL,
    reported_at BIGINT NOT NULL
);

-- What a slicer's monitor asks for every few seconds (`/api/job`): a member's job running,
-- waiting or last, chosen from this index alone, whatever the member's history.
CREATE INDEX jobs_owner_current ON jobs (owner_id, state, machine_id, target_machine_id, id);
