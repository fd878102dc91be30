#!/usr/bin/env python3
"""Decode herd's golden MessagePack vectors with Python's msgpack and compare with their JSON.

Usage: check.py DIR. Exits non-zero on any mismatch; prints "N vectors ok" on success.
"""
import json
import pathlib
import sys

try:
    import msgpack
except ImportError:
    sys.exit("python3 module 'msgpack' is missing: python3 -m pip install msgpack")

root = pathlib.Path(sys.argv[1])
bad = []
count = 0
for mp in sorted(root.glob("*.msgpack")):
    count += 1
    with open(mp, "rb") as f:
        got = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    with open(mp.with_suffix(".json")) as f:
        want = json.load(f)
    if got != want:
        bad.append(f"{mp.name}: msgpack gives {got!r}\n    json gives {want!r}")
if count == 0:
    sys.exit(f"no vectors in {root}")
if bad:
    sys.exit("mismatches:\n  " + "\n  ".join(bad))
print(f"python msgpack {msgpack.version}: {count} vectors ok")
