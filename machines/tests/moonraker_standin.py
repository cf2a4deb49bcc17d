"""A stand-in for Moonraker in front of Klipper, for the Moonraker driver's tests.

Moonraker needs Klipper behind it and is not on PyPI, so the tests serve the part of its HTTP
API that Fabrique uses, behaving as Moonraker (Arksine/moonraker) and Klipper
(Klipper3d/klipper) do in their source; docs/print-servers.md lists each behaviour and where
it was read. In short:

- answers are `{"result": ...}`, except the upload's, which is not wrapped:
  `{"item": {...}, "print_started": false, "print_queued": false, "action": "create_file"}`;
- errors are `{"error": {"code", "message", "traceback"}}`; `message` is the HTTP reason:
  Klipper's words for a refused command (400), or "Unknown" when those words span several
  lines (Tornado 6.5.3 and later refuse such a reason), and only the bare reason phrase for
  upload errors ("Unprocessable Entity", "Forbidden"), whose detail is in `traceback`;
- `/printer/objects/query` answers 200 whatever Klipper's state, with `webhooks.state`
  (startup, ready, shutdown, error) and `state_message`; only while Klipper is disconnected
  from Moonraker does `/printer/*` answer 503 "Klippy Host not connected"; objects the
  printer does not have are `{}`;
- a shutdown leaves `print_stats.state` at "paused" (the SD print stops as if paused);
  commands are then refused with the shutdown message;
- a start while printing is "SD busy", of a file that is not there "Unable to open file";
- a cancel is answered at once and `print_stats.state` becomes "cancelled" CANCEL_S seconds
  later, `virtual_sdcard` then says `file_path: null` and progress 0;
- `virtual_sdcard.progress` is how far the file was read, ahead of the motion: it reaches 1
  while the last quarter of the print still runs, before "complete".

A print takes SECONDS seconds of printing (pauses excluded). `--without OBJECT` leaves an
object out of the printer's configuration.

    python3 moonraker_standin.py PORT SECONDS [--without heater_bed]

Control endpoints for the tests, under /standin/ (not Moonraker's):

- POST /standin/shutdown?message=...: Klipper shuts down by itself (thermal runaway, MCU);
- POST /standin/restart?disconnected=S&startup=S: Klipper restarts: disconnected for S
  seconds, then starting for S seconds, then ready with nothing loaded;
- POST /standin/macro_error?command=CANCEL_PRINT&message=...: that command fails once with
  that error, as a user's macro can;
- POST /standin/gcode_error?message=...: a line of the file fails (the print ends in "error");
- POST /standin/ignore_next_cancel: the next cancel is answered "ok" and does nothing (a
  user's CANCEL_PRINT macro that lost its CANCEL_PRINT_BASE);
- POST /standin/corrupt_next_upload: the next upload arrives damaged (checksum mismatch);
- POST /standin/lose_next_upload: the next upload is taken, then deleted by someone else;
- GET /standin/raw: the printer objects as Klipper has them (what a query would return).
"""

import hashlib
import json
import re
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])
SECONDS = float(sys.argv[2])
WITHOUT = set(sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--without")
# The file is read to its end when this share of the motion is done (Klipper's look-ahead
# queue and the slicer's end G-code still run after the last line is read).
READ_AHEAD = 0.75
CANCEL_S = 1.0
FILAMENT_MM = 1200.0
LAYERS = 40

# Klipper's words (klippy/klippy.py, klippy/extras/error_mcu.py).
MESSAGE_READY = "Printer is ready"
MESSAGE_STARTUP = (
    "\nPrinter is not ready\nThe klippy host software is attempting to connect.  Please\n"
    "retry in a few moments.\n"
)
MESSAGE_SHUTDOWN = (
    "\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" command to reset "
    "the firmware, reload the\nconfig, and restart the host software.\nPrinter is shutdown\n"
)
REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Entity",
           503: "Service Unavailable"}
# Tornado's reason-phrase rule (RFC 9110: tab, space, visible characters, obs-text).
REASON_OK = re.compile(r"[\t \x21-\x7e\x80-\xff]+")

lock = threading.Lock()
files = {}
faults = {"macro_error": {}, "corrupt_upload": False, "lose_upload": False, "ignore_cancel": False}
klippy = {"state": "ready", "message": MESSAGE_READY, "until": None, "next": None}


def fresh_job():
    return {
        "state": "standby", "filename": "", "printed": 0.0, "since": None, "started": None,
        "total": 0.0, "message": "", "loaded": False, "cancel_at": None, "size": 0,
    }


job = fresh_job()


def now():
    return time.monotonic()


def update():
    """Brings Klipper and the print up to date; called with the lock held."""
    global job
    t = now()
    if klippy["until"] is not None and t >= klippy["until"]:
        if klippy["next"] == "startup":
            # Klipper runs again and is connecting to its MCU: a fresh process, nothing loaded.
            job = fresh_job()
            klippy.update(state="startup", message=MESSAGE_STARTUP, until=t + klippy["startup_s"], next="ready")
        else:
            klippy.update(state="ready", message=MESSAGE_READY, until=None, next=None)
    if job["state"] == "printing":
        job["printed"] += t - job["since"]
        job["since"] = t
        if job["printed"] >= SECONDS:
            job["printed"] = SECONDS
            job["loaded"] = False
            finish("complete")
    if job["cancel_at"] is not None and t >= job["cancel_at"]:
        cancel_now()


def finish(state, message=""):
    """print_stats._note_finish."""
    job["state"] = state
    job["message"] = message
    job["total"] = now() - job["started"]
    job["started"] = None


def cancel_now():
    """virtual_sdcard.do_cancel: the file is closed, its position and size set to 0."""
    job["cancel_at"] = None
    if job["loaded"]:
        job["loaded"] = False
        finish("cancelled")
    job["size"] = 0


def shutdown(message):
    """Printer.invoke_shutdown: the SD print stops as a pause would (print_stats "paused")."""
    if klippy["state"] == "shutdown":
        return
    if job["state"] == "printing":
        job["state"] = "paused"
    job["cancel_at"] = None
    klippy.update(state="shutdown", message=message + MESSAGE_SHUTDOWN, until=None, next=None)


def read_fraction():
    if not job["loaded"] and job["state"] != "complete":
        return 0.0
    return min(1.0, job["printed"] / (SECONDS * READ_AHEAD))


def objects():
    heating = klippy["state"] == "ready" and job["state"] in ("printing", "paused")
    done = job["printed"] / SECONDS
    total = job["total"] if job["started"] is None else now() - job["started"]
    size = job["size"]
    position = int(size * read_fraction()) if size else 0
    layers = job["filename"] != ""
    return {
        "webhooks": {"state": klippy["state"], "state_message": klippy["message"]},
        "print_stats": {
            "filename": job["filename"],
            "total_duration": total,
            "print_duration": job["printed"],
            "filament_used": FILAMENT_MM * done,
            "state": job["state"],
            "message": job["message"],
            "info": {
                "total_layer": LAYERS if layers else None,
                "current_layer": min(LAYERS, 1 + int(LAYERS * done)) if layers else None,
            },
        },
        "virtual_sdcard": {
            "file_path": f"/home/pi/printer_data/gcodes/{job['filename']}" if job["loaded"] else None,
            "progress": position / size if size else 0.0,
            "is_active": job["state"] == "printing" and klippy["state"] == "ready",
            "file_position": position,
            "file_size": size,
        },
        "extruder": {"temperature": 214.8 if heating else 24.0, "target": 215.0 if heating else 0.0},
        "heater_bed": {"temperature": 59.9 if heating else 23.0, "target": 60.0 if heating else 0.0},
    }


class Failure(Exception):
    """A tornado.web.HTTPError as Moonraker raises it: `reason` is what `message` shows,
    `detail` goes only into the traceback (HTTPError's log_message)."""

    def __init__(self, status, reason=None, detail=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, e):
        # RequestHandler.write_error in moonraker/components/application.py, after Tornado's
        # send_error/set_status: the message is the reason, or "Unknown" if it is not a valid
        # reason phrase; the traceback ends with str(HTTPError).
        reason = e.reason if e.reason is not None else REASONS.get(e.status, "Unknown")
        message = reason if REASON_OK.fullmatch(reason) and "<" not in reason else "Unknown"
        text = f"HTTP {e.status}: {reason}" + (f" ({e.detail})" if e.detail else "")
        traceback = (
            "Traceback (most recent call last):\n"
            '  File "/home/pi/moonraker-env/lib/python3.11/site-packages/tornado/web.py", '
            "line 1846, in _execute\n    result = await result\n"
            f"tornado.web.HTTPError: {text}\n"
        )
        self.answer(e.status, {"error": {"code": e.status, "message": message, "traceback": traceback}})

    def do_GET(self):
        try:
            self.get()
        except Failure as e:
            self.fail(e)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            self.post(body)
        except Failure as e:
            self.fail(e)

    def get(self):
        url = urlparse(self.path)
        with lock:
            update()
            if url.path == "/server/info":
                connected = klippy["state"] != "disconnected"
                return self.answer(200, {"result": {"klippy_connected": connected, "klippy_state": klippy["state"]}})
            if url.path == "/standin/raw":
                return self.answer(200, objects())
            if url.path == "/printer/objects/query":
                not_connected()
                have = objects()
                # Objects the printer does not have come back empty (klippy/webhooks.py).
                wanted = parse_qs(url.query, keep_blank_values=True)
                status = {name: ({} if name in WITHOUT else have.get(name, {})) for name in wanted}
                return self.answer(200, {"result": {"eventtime": now(), "status": status}})
        raise Failure(404)

    def post(self, body):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with lock:
            update()
            if url.path.startswith("/standin/"):
                return self.control(url.path, query)
            if url.path == "/server/files/upload":
                return self.upload(body)
            not_connected()
            if url.path == "/printer/emergency_stop":
                # webhooks' emergency_stop: invoke_shutdown("Shutdown due to webhooks request").
                shutdown("Shutdown due to webhooks request")
                return self.ok()
            if url.path == "/printer/print/start":
                self.run_gcode("SDCARD_PRINT_FILE")
                name = query.get("filename", "")
                if job["state"] == "printing":
                    raise Failure(400, "SD busy")
                if name not in files:
                    raise Failure(400, "Unable to open file")
                # A paused print is dropped for the new one, as Klipper does.
                job.update(fresh_job(), state="printing", filename=name, since=now(), started=now(),
                           loaded=True, size=len(files[name]))
            elif url.path == "/printer/print/pause":
                self.run_gcode("PAUSE")
                if job["state"] == "printing":
                    job["state"] = "paused"
            elif url.path == "/printer/print/resume":
                self.run_gcode("RESUME")
                if job["state"] == "paused" and job["cancel_at"] is None:
                    job.update(state="printing", since=now())
            elif url.path == "/printer/print/cancel":
                self.run_gcode("CANCEL_PRINT")
                if faults["ignore_cancel"]:
                    faults["ignore_cancel"] = False
                elif job["loaded"] and job["cancel_at"] is None:
                    job["cancel_at"] = now() + CANCEL_S
            else:
                raise Failure(404)
            return self.ok()

    def ok(self):
        self.answer(200, {"result": "ok"})

    def run_gcode(self, name):
        """A G-code command through Klipper: refused with Klipper's state while it is not
        ready (klippy/gcode.py cmd_default), or with a macro's error."""
        if klippy["state"] != "ready":
            raise Failure(400, klippy["message"])
        error = faults["macro_error"].pop(name, None)
        if error is not None:
            raise Failure(400, error)

    def control(self, path, query):
        if path == "/standin/shutdown":
            shutdown(query.get("message", "Heater extruder not heating at expected rate"))
        elif path == "/standin/restart":
            down = float(query.get("disconnected", "1"))
            klippy.update(state="disconnected", message="", until=now() + down, next="startup",
                          startup_s=float(query.get("startup", "1")))
        elif path == "/standin/macro_error":
            faults["macro_error"][query["command"]] = query["message"]
        elif path == "/standin/gcode_error":
            # virtual_sdcard's work loop: a line of the file fails, the print ends in "error"
            # with Klipper's words (print_stats.note_error); Klipper itself stays ready.
            if job["state"] in ("printing", "paused"):
                job["loaded"] = False
                finish("error", query.get("message", "Must home axis first"))
        elif path == "/standin/ignore_next_cancel":
            faults["ignore_cancel"] = True
        elif path == "/standin/corrupt_next_upload":
            faults["corrupt_upload"] = True
        elif path == "/standin/lose_next_upload":
            faults["lose_upload"] = True
        else:
            raise Failure(404)
        self.ok()

    def upload(self, body):
        form = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        fields, upload = {}, None
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                upload = (part.get_filename(), part.get_payload(decode=True))
            else:
                fields[name] = part.get_payload(decode=True).decode()
        if upload is None:
            raise Failure(400, "No file")
        name, data = upload
        if faults["corrupt_upload"]:
            faults["corrupt_upload"] = False
            data = data[:-1] + bytes([data[-1] ^ 0x20])
        # FileUploadHandler.post: HTTPError(422, detail): the detail is a log message.
        calculated = hashlib.sha256(data).hexdigest()
        if fields.get("checksum") and fields["checksum"].lower() != calculated:
            raise Failure(422, detail=f"File checksum mismatch: expected {fields['checksum']}, calculated {calculated}")
        # file_manager._finish_gcode_upload: the loaded file while printing or paused.
        if klippy["state"] == "ready" and job["state"] in ("printing", "paused") and job["filename"] == name:
            raise Failure(403, detail="File is loaded, upload not permitted")
        if faults["lose_upload"]:
            faults["lose_upload"] = False
        else:
            files[name] = data
        item = {"path": name, "root": fields.get("root", "gcodes"), "modified": time.time(),
                "size": len(data), "permissions": "rw"}
        self.answer(201, {"item": item, "print_started": False, "print_queued": False, "action": "create_file"})


def not_connected():
    """KlippyConnection.request: 503 while Klipper is not connected to Moonraker."""
    if klippy["state"] == "disconnected":
        raise Failure(503, "Klippy Host not connected")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
