-- Vinyl cutters speaking HP-GL over serial, with XON/XOFF or RTS/CTS flow control: two more
-- connection kinds.
ALTER TABLE machines DROP CONSTRAINT machines_connection_check;
ALTER TABLE machines ADD CONSTRAINT machines_connection_check CHECK (connection IN
    ('serial_marlin', 'serial_grbl', 'serial_hpgl', 'serial_hpgl_rts_cts', 'octoprint', 'moonraker', 'manual'));
