"""A quick check of the compiled ops on random data: `python -m wsls.ops.selfcheck`.

Prints what the build holds, runs each op on CPU (and CUDA when present) against its PyTorch
reference, and exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys
import time

import torch

from wsls.ops import attention_cam, build_info, reference


def check_attention_cam(device: str) -> bool:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 64, 16, 16, 12, generator=g).to(device)
    cls_weight = (torch.randn(64, generator=g) / 8).to(device)
    cls_bias = torch.zeros(1).to(device)
    att_weight = torch.randn(3, 64, generator=g).to(device)
    start = time.perf_counter()
    ours = attention_cam(features, cls_weight, cls_bias, att_weight)
    elapsed = time.perf_counter() - start
    ref = reference.attention_cam(features, cls_weight, cls_bias, att_weight)
    err = max((a - b).abs().max().item() for a, b in zip(ours, ref, strict=True))
    ok = err < 1e-4
    print(
        f"attention_cam [{device}] features {tuple(features.shape)}: logits "
        f"{[round(v, 4) for v in ours.logits.tolist()]}, ACAM max {ours.acam.amax().item():.3f}, "
        f"max |ours - reference| {err:.2e} ({elapsed * 1e3:.1f} ms) -> {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def main() -> int:
    print(f"wsls build: {build_info()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ok = all(check_attention_cam(d) for d in devices)
    print("self-check passed" if ok else "self-check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
