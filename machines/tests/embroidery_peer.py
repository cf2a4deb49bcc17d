#!/usr/bin/env python3
"""pyembroidery as an independent peer for Fabrique's embroidery readers and DST writer.

    embroidery_peer.py write --seed S --count N --out DIR
        Generates N random designs (seeds S .. S+N-1), writes each with pyembroidery as DST,
        PES (version 1, the default), PES version 6, EXP and JEF into DIR, reads every file
        back with pyembroidery and prints what it read.

    embroidery_peer.py read FILE...
        Reads the files with pyembroidery (format from the extension) and prints what it read.

The output is one JSON object: {"files": [{"path", "format", "counts", "extents",
"threads"}, ...]}. `counts` are pyembroidery's command counts on the pattern it reads back
(writers split, add and merge commands, so only what is read back is comparable):
STITCH, JUMP, TRIM, COLOR_CHANGE, STOP, and TRIM_PER_TRAVEL, the TRIMs not preceded by
another TRIM since the last STITCH, COLOR_CHANGE or STOP (PEC flags a trim on every jump
of a travel; Fabrique counts one cut per travel). `extents` is pyembroidery's `extents()`
(min_x, min_y, max_x, max_y in tenths of a millimetre, y down), null for an empty pattern.
`threads` is the thread list as `#rrggbb`.

When pyembroidery is missing, prints {"missing": ..., "install": ...} and exits with 3.
"""

import argparse
import json
import os
import random
import sys

try:
    import pyembroidery
    from pyembroidery import (
        COLOR_CHANGE,
        COMMAND_MASK,
        JUMP,
        STITCH,
        STOP,
        TRIM,
        EmbPattern,
        EmbThread,
    )
except ImportError as e:  # the Rust test turns this into a clear failure
    print(
        json.dumps(
            {
                "missing": f"pyembroidery ({e})",
                "install": "python3 -m pip install pyembroidery",
            }
        ),
        flush=True,
    )
    sys.exit(3)


def random_design(seed):
    """A random design: 1 to 5 colour blocks, each of 1 to 4 runs of stitches reached by a
    move (sometimes trimmed before it), stitches mostly short and now and then longer than a
    DST record (12.1 mm), inside about ±80 mm."""
    rng = random.Random(seed)
    p = EmbPattern()
    p.metadata("name", f"peer{seed}")
    x = y = 0
    for block in range(rng.randint(1, 5)):
        thread = EmbThread()
        thread.set_color(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        p.add_thread(thread)
        if block > 0:
            p.color_change()
        for run in range(rng.randint(1, 4)):
            if run > 0 or block > 0 or rng.random() < 0.5:
                if run > 0 and rng.random() < 0.6:
                    p.trim()
                x = rng.randint(-600, 600)
                y = rng.randint(-600, 600)
                p.move_abs(x, y)
            for _ in range(rng.randint(1, 80)):
                step = 150 if rng.random() < 0.05 else 60
                x = max(-800, min(800, x + rng.randint(-step, step)))
                y = max(-800, min(800, y + rng.randint(-step, step)))
                p.stitch_abs(x, y)
    p.end()
    return p


WRITERS = {
    "dst": (pyembroidery.write_dst, {}),
    "pes": (pyembroidery.write_pes, {}),
    "pes6": (pyembroidery.write_pes, {"version": 6}),
    "exp": (pyembroidery.write_exp, {}),
    "jef": (pyembroidery.write_jef, {}),
}


def describe(path, fmt, pattern):
    counts = {"STITCH": 0, "JUMP": 0, "TRIM": 0, "COLOR_CHANGE": 0, "STOP": 0}
    names = {STITCH: "STITCH", JUMP: "JUMP", TRIM: "TRIM", COLOR_CHANGE: "COLOR_CHANGE", STOP: "STOP"}
    trim_per_travel = 0
    trimmed = False
    for stitch in pattern.stitches:
        command = stitch[2] & COMMAND_MASK
        name = names.get(command)
        if name is not None:
            counts[name] += 1
        if command in (STITCH, COLOR_CHANGE, STOP):
            trimmed = False
        elif command == TRIM and not trimmed:
            trim_per_travel += 1
            trimmed = True
    counts["TRIM_PER_TRAVEL"] = trim_per_travel
    extents = None
    if pattern.stitches:
        extents = [int(v) for v in pattern.extents()]
    threads = [t.hex_color() for t in pattern.threadlist if t is not None]
    return {
        "path": path,
        "format": fmt,
        "counts": counts,
        "extents": extents,
        "threads": threads,
    }


def read(path):
    fmt = os.path.splitext(path)[1][1:].lower()
    reader = {
        "dst": pyembroidery.read_dst,
        "pes": pyembroidery.read_pes,
        "exp": pyembroidery.read_exp,
        "jef": pyembroidery.read_jef,
    }[fmt]
    return reader(path)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--count", type=int, default=1)
    w.add_argument("--out", required=True)
    r = sub.add_parser("read")
    r.add_argument("files", nargs="+")
    args = parser.parse_args()

    files = []
    if args.command == "write":
        for seed in range(args.seed, args.seed + args.count):
            for fmt, (writer, settings) in WRITERS.items():
                extension = "pes" if fmt == "pes6" else fmt
                path = os.path.join(args.out, f"design{seed}_{fmt}.{extension}")
                # A fresh pattern for each writer: writers normalise the pattern they get.
                writer(random_design(seed), path, settings)
                files.append(describe(path, fmt, read(path)))
    else:
        for path in args.files:
            files.append(describe(path, os.path.splitext(path)[1][1:].lower(), read(path)))
    print(json.dumps({"files": files}), flush=True)


if __name__ == "__main__":
    main()
