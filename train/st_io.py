"""Minimal safetensors reader and writer (numpy and torch tensors).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
its dtype, shape and [begin, end) byte offsets into the data that follows, then the raw
little-endian C-contiguous data. We write tensors in name order and pad the header with spaces
to a multiple of 8, as the reference writer does. This is not a general-purpose library: only
F32, F16 and I64 are handled, which is all the project stores.
"""
import json
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_NAME = {np.dtype(v): k for k, v in _DT.items()}


def _to_numpy(t):
    if hasattr(t, "detach"):
        t = t.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(t)


def save(path, tensors, dtype=None, metadata=None):
    """Write dict name -> tensor (numpy or torch) to path. dtype: None keeps each tensor's
    dtype, or 'F16' / 'F32' converts every floating tensor."""
    arrays = {}
    for name in sorted(tensors):
        a = _to_numpy(tensors[name])
        if dtype and a.dtype.kind == "f":
            a = a.astype(_DT[dtype])
        if a.dtype not in _NAME:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        arrays[name] = a.astype(a.dtype.newbyteorder("<"), copy=False)
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in arrays.items():
        header[name] = {"dtype": _NAME[np.dtype(a.dtype.name)], "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for a in arrays.values():
            f.write(a.tobytes())


def load(path):
    """Read a safetensors file into dict name -> numpy array (dtype as stored)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        a = np.frombuffer(buf[8 + n + b:8 + n + e], dtype=np.dtype(_DT[h["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(h["shape"]).astype(_DT[h["dtype"]])
    return out
