-- A manager's approval of a job since it was last queued: who, when, what they saw (the
-- codes of the findings, comma-separated) and whether a member without the badge may run it
-- with a trainer there. Queueing the job again clears it.
ALTER TABLE jobs ADD COLUMN approved_by INTEGER REFERENCES users (id);
ALTER TABLE jobs ADD COLUMN approved_at INTEGER;
ALTER TABLE jobs ADD COLUMN approval_seen TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN approval_supervised INTEGER NOT NULL DEFAULT 0;
