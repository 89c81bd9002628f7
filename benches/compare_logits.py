#!/usr/bin/env python3
"""Compare two `pagemind debug logits` runs of one model (e.g. --device cpu and --device cuda).

Each step's logits must agree within 2% of their range, and the two argmaxes must be the same
token or within that tolerance of each other; NaN or infinite logits fail.
Usage: compare_logits.py A.jsonl B.jsonl [NAME]; exit status 0 when every step agrees.
"""
import json
import math
import sys

a = [json.loads(line) for line in open(sys.argv[1])]
b = [json.loads(line) for line in open(sys.argv[2])]
name = sys.argv[3] if len(sys.argv) > 3 else sys.argv[1]
ok = len(a) == len(b) > 0
for x, y in zip(a, b):
    u, v = x["logits"], y["logits"]
    finite = all(isinstance(p, float) and math.isfinite(p) for p in u + v) and len(u) == len(v)
    if not finite:
        print(f"{name} step {x['step']}: non-finite logits (or lengths differ) FAIL")
        ok = False
        continue
    diff = max(abs(p - q) for p, q in zip(u, v))
    span = max(u) - min(u)
    am, bm = u.index(max(u)), v.index(max(v))
    good = diff <= 0.02 * span and (am == bm or max(u) - u[bm] <= 0.02 * span)
    ok &= good
    print(f"{name} step {x['step']} ({x['tokens']} tokens): max |a-b| {diff:.4f} of a {span:.2f} range, "
          f"argmax {am}/{bm} {'ok' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
