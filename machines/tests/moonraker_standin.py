"""A stand-in for Moonraker, for the Moonraker driver's tests.

Moonraker itself needs Klipper behind it and is not on PyPI, so the tests serve the part of
its documented HTTP API (Arksine/moonraker, docs/external_api) that Fabrique uses, with the
documented shapes: `{"result": ...}` answers, `{"error": {"code", "message"}}` failures,
`print_stats` states standby/printing/paused/complete/cancelled/error, a SHA-256 checked
upload (422 on mismatch), and an emergency stop that shuts Klipper down (queries then answer
503 and `/server/info` says `klippy_state: shutdown`).

A print takes SECONDS seconds of printing (pauses excluded).

    python3 moonraker_standin.py PORT SECONDS
"""

import hashlib
import json
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])
SECONDS = float(sys.argv[2])

lock = threading.Lock()
files = {}
klippy = "ready"
job = {"state": "standby", "filename": "", "printed": 0.0, "since": None, "message": ""}


def progress_now():
    """Brings the running print up to date; called with the lock held."""
    if job["state"] == "printing":
        now = time.monotonic()
        job["printed"] += now - job["since"]
        job["since"] = now
        if job["printed"] >= SECONDS:
            job["printed"] = SECONDS
            job["state"] = "complete"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, message):
        self.answer(status, {"error": {"code": status, "message": message}})

    def do_GET(self):
        url = urlparse(self.path)
        with lock:
            progress_now()
            if url.path == "/server/info":
                return self.answer(200, {"result": {"klippy_connected": True, "klippy_state": klippy}})
            if url.path == "/printer/objects/query":
                if klippy != "ready":
                    return self.fail(503, f"Klippy host not connected ({klippy})")
                heating = job["state"] in ("printing", "paused")
                return self.answer(200, {"result": {"eventtime": time.monotonic(), "status": {
                    "print_stats": {
                        "state": job["state"],
                        "filename": job["filename"],
                        "print_duration": job["printed"],
                        "message": job["message"],
                    },
                    "virtual_sdcard": {"progress": job["printed"] / SECONDS if job["filename"] else 0.0},
                    "extruder": {"temperature": 214.8 if heating else 24.0, "target": 215.0 if heating else 0.0},
                    "heater_bed": {"temperature": 59.9 if heating else 23.0, "target": 60.0 if heating else 0.0},
                }}})
        self.fail(404, "Not Found")

    def do_POST(self):
        global klippy
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        query = parse_qs(url.query)
        with lock:
            progress_now()
            if url.path == "/server/files/upload":
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
                    return self.fail(400, "No file")
                if fields.get("checksum") and fields["checksum"] != hashlib.sha256(upload[1]).hexdigest():
                    return self.fail(422, "File checksum mismatch")
                if job["state"] in ("printing", "paused") and job["filename"] == upload[0]:
                    return self.fail(403, "File is loaded, upload not permitted")
                files[upload[0]] = upload[1]
                return self.answer(201, {"result": {"item": {"path": upload[0], "root": "gcodes"}, "action": "create_file"}})
            if klippy != "ready":
                return self.fail(503, f"Klippy host not connected ({klippy})")
            if url.path == "/printer/print/start":
                name = query.get("filename", [""])[0]
                if name not in files:
                    return self.fail(400, f"File {name} does not exist")
                if job["state"] in ("printing", "paused"):
                    return self.fail(400, "Print already in progress")
                job.update(state="printing", filename=name, printed=0.0, since=time.monotonic(), message="")
            elif url.path == "/printer/print/pause":
                if job["state"] == "printing":
                    job["state"] = "paused"
            elif url.path == "/printer/print/resume":
                if job["state"] == "paused":
                    job.update(state="printing", since=time.monotonic())
            elif url.path == "/printer/print/cancel":
                if job["state"] in ("printing", "paused"):
                    job["state"] = "cancelled"
            elif url.path == "/printer/emergency_stop":
                klippy = "shutdown"
                job.update(state="error", message="Shutdown due to webhooks request")
            else:
                return self.fail(404, "Not Found")
            return self.answer(200, {"result": "ok"})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
