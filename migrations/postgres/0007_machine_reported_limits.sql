-- What a printer's firmware reported of its motion limits (Marlin's M503 report, read when
-- a job opens the link), kept for the manager to adopt into the machine's profile. One row
-- per machine: the latest report.
CREATE TABLE machine_reported_limits (
    machine_id  BIGINT PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    limits      TEXT NOT NULL,
    reported_at BIGINT NOT NULL
);
