#!/usr/bin/env python3
"""Bridge OctoPrint's own virtual printer to a pseudo-terminal.

An independent peer for Fabrique's Marlin host: OctoPrint's `VirtualPrinter`
(`octoprint.plugins.virtual_printer.virtual`) with its stock settings, except the options
given here. The pty's slave path is printed as `READY <path>` on stdout; the bridge runs
until stdin closes or the process is killed.

Usage: octoprint_peer.py [--resend-ratio PERCENT] [--throttle SECONDS]
"""

import argparse
import copy
import os
import sys
import tempfile
import threading
import tty

try:
    from octoprint.plugins.virtual_printer import VirtualPrinterPlugin
    from octoprint.plugins.virtual_printer import virtual
    from octoprint.plugins.virtual_printer.virtual import VirtualPrinter
except ImportError as e:  # the Rust test turns this into a clear failure
    print(f"MISSING octoprint: {e} (pip install octoprint)", flush=True)
    sys.exit(3)


class Settings:
    """The subset of OctoPrint's plugin settings API the virtual printer calls."""

    def __init__(self, overrides, folder):
        self.values = copy.deepcopy(VirtualPrinterPlugin().get_settings_defaults())
        self.values.update(overrides)
        self.folder = folder

    def global_get_basefolder(self, name):
        path = os.path.join(self.folder, name)
        os.makedirs(path, exist_ok=True)
        return path

    def get(self, path, merged=False, **_kwargs):
        value = self.values
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def get_int(self, path, **kwargs):
        value = self.get(path, **kwargs)
        return None if value is None else int(value)

    def get_float(self, path, **kwargs):
        value = self.get(path, **kwargs)
        return None if value is None else float(value)

    def get_boolean(self, path, **kwargs):
        return bool(self.get(path, **kwargs))


class NoPlugins:
    """Stands in for OctoPrint's plugin manager: no action-command hooks."""

    def get_hooks(self, _name):
        return {}


class Profiles:
    def get_current_or_default(self):
        return {"volume": {"width": 200, "depth": 200, "height": 200, "origin": "lowerleft"}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resend-ratio", type=int, default=0)
    parser.add_argument("--throttle", type=float, default=0.0)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="octoprint-peer-")
    virtual.plugin_manager = NoPlugins
    settings = Settings({"resend_ratio": args.resend_ratio, "throttle": args.throttle}, data)
    # OCTOPRINT_PEER_LOG=FILE keeps the peer's own serial log, for debugging.
    handler = None
    if os.environ.get("OCTOPRINT_PEER_LOG"):
        import logging

        handler = logging.FileHandler(os.environ["OCTOPRINT_PEER_LOG"])
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    printer = VirtualPrinter(
        settings, Profiles(), data, seriallog_handler=handler, read_timeout=0.5
    )

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    def to_host():
        while True:
            line = printer.readline()
            if printer.outgoing is None:
                return
            if line:
                # The virtual printer hands out lines without their end of line.
                if not line.endswith(b"\n"):
                    line += b"\n"
                os.write(master, line)

    def to_printer():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                continue  # no host has the slave open right now
            if not chunk:
                continue
            # One line per write: the virtual printer takes one line from each chunk it
            # receives and leaves the rest of the chunk until the next one arrives (its
            # read loop waits for new data before looking at what it kept), so a second
            # line sent before the first was answered would sit there until the host
            # spoke again. A UART hands the firmware every byte as it comes.
            for line in chunk.splitlines(keepends=True):
                printer.write(line)

    threading.Thread(target=to_host, daemon=True).start()
    threading.Thread(target=to_printer, daemon=True).start()
    print(f"READY {path}", flush=True)
    # Run until our parent closes stdin (or kills us).
    sys.stdin.read()
    printer.close()


if __name__ == "__main__":
    main()
