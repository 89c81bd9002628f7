#!/usr/bin/env python3
"""Synthetic-weight GGUF files: a real model's header, random weights of the same types and shapes.

A GPU machine lent for timing takes at most 64 MiB per call, so the real weights cannot travel.
Their header can (metadata with the tokenizer, then the tensor table): `header` cuts it from a
real file here, `fill` writes a full-size file from it there, with random quantized blocks whose
f16 scales centre them on zero with a spread like trained weights' and 1-D tensors (norms,
biases) set to 1.0. Speed depends only on the types and shapes, which are the real ones.

    python3 benches/gguf_synth.py header MODEL.gguf OUT.hdr
    python3 benches/gguf_synth.py fill OUT.hdr SYNTH.gguf [--seed N]
    python3 benches/gguf_synth.py info FILE   # tensor types and sizes

Needs numpy for `fill`; `header` and `info` need only the standard library.
"""
import argparse
import struct
import sys

# ggml type id -> (name, elements per block, bytes per block, (byte offset, value) of each f16
# scale in a block). The values centre each type's random codes on zero with a spread of about
# 0.02, like trained weights, so activations stay finite through every layer.
TYPES = {
    0: ("F32", 1, 4, ()),
    1: ("F16", 1, 2, ()),
    2: ("Q4_0", 32, 18, ((0, 0.004),)),
    3: ("Q4_1", 32, 20, ((0, 0.004), (2, -0.032))),
    6: ("Q5_0", 32, 22, ((0, 0.002),)),
    7: ("Q5_1", 32, 24, ((0, 0.002), (2, -0.032))),
    8: ("Q8_0", 32, 34, ((0, 0.0002),)),
    10: ("Q2_K", 256, 84, ((80, 0.002), (82, 0.003))),
    11: ("Q3_K", 256, 110, ((108, 0.0005),)),
    12: ("Q4_K", 256, 144, ((0, 0.0001), (2, 0.00075))),
    13: ("Q5_K", 256, 176, ((0, 0.00005), (2, 0.000775))),
    14: ("Q6_K", 256, 210, ((208, 0.00002),)),
    30: ("BF16", 1, 2, ()),
}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        size = struct.calcsize("<" + fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack("<" + fmt, raw)[0]

    def string(self):
        return self.f.read(self.take("Q")).decode("utf-8", "replace")

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            it, n = self.take("I"), self.take("Q")
            if it in SCALAR:  # skip big numeric arrays quickly
                self.f.read(n * struct.calcsize("<" + SCALAR[it]))
                return None
            return [self.value(it) for _ in range(n)] if it != 8 else [self.string() for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def parse(path):
    """(metadata, tensors [(name, dims, type, offset)], data_offset)."""
    with open(path, "rb") as f:
        r = Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (bad magic)")
        version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported (need 2 or 3)")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.take("I"))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.take("Q") for _ in range(r.take("I"))]
            tensors.append((name, dims, r.take("I"), r.take("Q")))
        align = int(meta.get("general.alignment", 32))
        pos = f.tell()
        return meta, tensors, (pos + align - 1) // align * align


def nbytes(dims, t):
    if t not in TYPES:
        raise ValueError(f"tensor type {t} is not supported by gguf_synth.py")
    _, per, size, _ = TYPES[t]
    n = 1
    for d in dims:
        n *= d
    return n // per * size


def header(src, out):
    _, tensors, data = parse(src)
    with open(src, "rb") as f, open(out, "wb") as o:
        o.write(f.read(data))
    print(f"{out}: {data} header bytes, {len(tensors)} tensors")


def fill(hdr, out, seed):
    import numpy as np

    _, tensors, data = parse(hdr)
    rng = np.random.default_rng(seed)
    with open(hdr, "rb") as f:
        head = f.read(data)
    if len(head) != data:
        raise ValueError(f"{hdr}: header is truncated")
    total = 0
    with open(out, "wb") as o:
        o.write(head)
        for name, dims, t, off in sorted(tensors, key=lambda x: x[3]):
            o.write(b"\0" * (data + off - o.tell()))
            _, per, size, scales = TYPES.get(t, (None, 1, 1, ()))
            n = nbytes(dims, t)
            if t in (0, 1, 30):
                count = n // size
                dt = {0: np.float32, 1: np.float16}.get(t)
                if len(dims) == 1:
                    vals = np.ones(count, dtype=np.float32)
                else:
                    vals = rng.normal(0.0, 0.02, count).astype(np.float32)
                if t == 30:
                    o.write((vals.view(np.uint32) >> 16).astype(np.uint16).tobytes())
                else:
                    o.write(vals.astype(dt).tobytes())
            else:
                blocks = rng.integers(0, 256, size=(n // size, size), dtype=np.uint8)
                for at, value in scales:
                    blocks[:, at : at + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
                o.write(blocks.tobytes())
            total += n
    print(f"{out}: {len(tensors)} tensors, {total / 1e6:.1f} MB of synthetic weights")


def info(path):
    _, tensors, data = parse(path)
    by = {}
    for _, dims, t, _ in tensors:
        name = TYPES.get(t, (f"type{t}",))[0]
        c, b = by.get(name, (0, 0))
        by[name] = (c + 1, b + nbytes(dims, t))
    for k, (c, b) in sorted(by.items()):
        print(f"{k}: {c} tensors, {b / 1e6:.1f} MB")
    print(f"header: {data} bytes")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("header")
    h.add_argument("src")
    h.add_argument("out")
    f = sub.add_parser("fill")
    f.add_argument("hdr")
    f.add_argument("out")
    f.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("info")
    i.add_argument("path")
    a = p.parse_args()
    try:
        if a.cmd == "header":
            header(a.src, a.out)
        elif a.cmd == "fill":
            fill(a.hdr, a.out, a.seed)
        else:
            info(a.path)
    except (OSError, ValueError) as e:
        sys.exit(f"gguf_synth: {e}")


if __name__ == "__main__":
    main()
