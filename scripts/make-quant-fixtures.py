#!/usr/bin/env python3
"""Writes Tests/Fixtures/quants/: blocks quantized by the `gguf` Python package (pip install gguf),
with that package's own dequantization, so the engine's block decoders are checked bit-exactly
against an independent implementation. Rerun only to extend the set; the output is committed.

For each type T: T.blocks (raw block bytes, 4 rows of 512 elements) and T.f32 (the dequantized
values, little-endian float32, 4 x 512). gguf-py quantizes the 32-element formats; for the K-quants
it only dequantizes, so their blocks are random bytes with finite f16 scales (every bit pattern of
the quantized fields is a valid block)."""
import os, sys
import numpy as np
from gguf import GGMLQuantizationType as Q, quants

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "quants")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261129)
# Rows with different scales and offsets, so mins, negative scales and clipping all occur.
data = np.stack([rng.normal(0, 1, 512), rng.normal(0.5, 0.1, 512), rng.uniform(-3, 1, 512), rng.standard_t(3, 512)]).astype(np.float32)
# Byte offsets of the f16 scales in each K-quant block (ggml-common.h): Q4_K/Q5_K start with d, dmin;
# Q6_K ends with d.
K_SCALES = {Q.Q4_K: (144, [0, 2]), Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208])}
for t in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
    if t in K_SCALES:
        size, offsets = K_SCALES[t]
        blocks = rng.integers(0, 256, size=(4, 2 * size), dtype=np.uint8)
        for row in range(4):
            for b in range(2):
                for o in offsets:
                    scale = np.array([rng.uniform(-0.05, 0.05)], dtype=np.float16).view(np.uint8)
                    blocks[row, b * size + o : b * size + o + 2] = scale
    else:
        blocks = quants.quantize(data, t)
    values = quants.dequantize(blocks, t).astype("<f4")
    blocks.tofile(os.path.join(out, f"{t.name}.blocks"))
    values.tofile(os.path.join(out, f"{t.name}.f32"))
    print(t.name, blocks.nbytes, "bytes")
