-- What people did at a GRBL machine's operator panel (unlock, homing, jogs, the work
-- origin, framing, overrides, console lines): who, when, the action, the line or byte sent
-- and what the machine answered. Kept with the machine; the account may go, the name stays.
CREATE TABLE machine_panel_log (
    id          BIGSERIAL PRIMARY KEY,
    machine_id  BIGINT NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    user_id     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    user_name   TEXT NOT NULL,
    action      TEXT NOT NULL,
    sent        TEXT NOT NULL,
    answer      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX machine_panel_log_machine ON machine_panel_log (machine_id, id);
