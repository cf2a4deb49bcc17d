//! Byte pipes to machines: serial ports, and HTTP for OctoPrint and Moonraker.
