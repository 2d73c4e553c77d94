"""data.coco_json: the vectorised RLE run-length sums against pycocotools' own decoding, valid and garbage counts."""

from __future__ import annotations

import random

import numpy as np
from pycocotools import mask as mask_utils


def _rle_reference(counts: str) -> int:
    """Sum of run lengths as pycocotools' rleFrString decodes them, -1 when malformed (slow, for testing)."""
    raw, p, cnts = counts.encode("utf-8", "replace"), 0, []
    while p < len(raw):
        x = k = 0
        more = 1
        while more:
            if p >= len(raw) or not 0 <= raw[p] - 48 <= 63:
                return -1
            c = raw[p] - 48
            x |= (c & 0x1F) << 5 * k
            more, p, k = c & 0x20, p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if k > 7:
            return -1
        x += cnts[-2] if len(cnts) > 2 else 0
        if x < 0:
            return -1
        cnts.append(x)
    return sum(cnts)


def test_rle_sums_match_pycocotools_decoding():
    from edgercnn.data.coco_json import rle_sums

    rng, rnd = np.random.default_rng(0), random.Random(0)
    valid = []
    for h, w in [(64, 64), (37, 91), (300, 500)]:
        for _ in range(30):
            mask = np.asfortranarray((rng.random((h, w)) < rng.random() * 0.1).astype(np.uint8))
            valid.append((mask_utils.encode(mask)["counts"].decode(), h * w))
    assert rle_sums([s for s, _ in valid]).tolist() == [n for _, n in valid]
    alphabet = [chr(c) for c in range(40, 120)] + ["é"]
    garbage = []
    for _ in range(3000):
        base = list(rnd.choice(valid)[0])
        choice = rnd.random()
        if choice < 0.3:
            garbage.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 10))))
        elif choice < 0.6:
            garbage.append("".join(base[: rnd.randint(0, len(base))]))
        else:
            base[rnd.randrange(len(base))] = rnd.choice(alphabet)
            garbage.append("".join(base))
    assert rle_sums(garbage).tolist() == [_rle_reference(s) for s in garbage]
