#!/usr/bin/env python3
"""What signing adds per message, in-process: encode (+ sign) on the sender, and
verify + decode on the worker, for a no-op call and a call with 1 KiB of
arguments. ``python benchmarks/signing_cost.py`` (no Redis needed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aioq._core.message import new_message, open_message
from aioq._core.signing import Signer

N = 200_000


def per_call_us(fn: object, n: int = N) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    signer = Signer(["benchmark-key-0123456789abcdef", "second-key-0123456789abcdef"])
    rotated = Signer(["second-key-0123456789abcdef", "benchmark-key-0123456789abcdef"])
    for label, args in (("no-op call", []), ("1 KiB of args", ["x" * 1024])):
        print(f"{label}:")
        for name, s in (("unsigned", None), ("signed", signer)):
            _, data = new_message("noop", "default", args, {}, max_bytes=1 << 20, signer=s)
            send = per_call_us(
                lambda s=s, a=args: new_message(
                    "noop", "default", a, {}, max_bytes=1 << 20, signer=s
                )
            )
            recv = per_call_us(lambda d=data, s=s: open_message(d, s))
            print(f"  {name:9} {len(data):5} bytes  send {send:5.2f} µs  receive {recv:5.2f} µs")
        _, data = new_message("noop", "default", args, {}, max_bytes=1 << 20, signer=signer)
        second = per_call_us(lambda d=data: open_message(d, rotated))
        print(f"  verified by the second key (during a rotation): receive {second:5.2f} µs")


if __name__ == "__main__":
    main()
