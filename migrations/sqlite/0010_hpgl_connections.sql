-- Vinyl cutters speaking HP-GL over serial, with XON/XOFF or RTS/CTS flow control: two more
-- connection kinds. SQLite cannot change a CHECK constraint in place, so the machines table
-- is rebuilt the way SQLite documents (new table, copy, drop, rename). This needs foreign
-- keys off, or dropping the old table would cascade to the bookings and logs of every
-- machine: `Store::migrate` runs SQLite's migrations on a connection with them off, and
-- checks every reference afterwards (`PRAGMA foreign_key_check`).
CREATE TABLE machines_new (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    kind               TEXT NOT NULL CHECK (kind IN ('fdm_printer', 'laser_cutter', 'embroidery', 'cnc_mill', 'vinyl_cutter', 'other')),
    connection         TEXT NOT NULL CHECK (connection IN ('serial_marlin', 'serial_grbl', 'serial_hpgl', 'serial_hpgl_rts_cts', 'octoprint', 'moonraker', 'manual')),
    serial_port        TEXT,
    baud               INTEGER,
    url                TEXT,
    api_key            TEXT,
    profile            TEXT NOT NULL,
    location           TEXT NOT NULL DEFAULT '',
    required_training  TEXT NOT NULL DEFAULT '',
    state              TEXT NOT NULL CHECK (state IN ('offline', 'idle', 'busy', 'paused', 'error', 'to_check', 'maintenance', 'disabled')),
    state_reason       TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
INSERT INTO machines_new (id, name, kind, connection, serial_port, baud, url, api_key, profile,
    location, required_training, state, state_reason, created_at, updated_at)
SELECT id, name, kind, connection, serial_port, baud, url, api_key, profile,
    location, required_training, state, state_reason, created_at, updated_at FROM machines;
DROP TABLE machines;
ALTER TABLE machines_new RENAME TO machines;
