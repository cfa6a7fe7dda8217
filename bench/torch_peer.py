#!/usr/bin/env python3
"""PyTorch side of the engine benchmark (bench/Oml.Bench runs it as its peer).

Does exactly the work that Oml.Bench's EngineBench does, with the same timing method, and prints one JSON
object: {"torch": version, "results": [{"name", "value", "unit"}...]}.
"""
import argparse
import json
import time

import torch


def timed(fn, sync, min_seconds):
    """Seconds per call: calls in batches until min_seconds have passed; the best batch average."""
    for _ in range(3):
        fn()
    sync()
    n, best, spent = 1, float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        dt = time.perf_counter() - t0
        spent += dt
        best = min(best, dt / n)
        if dt < 0.05:
            n *= 2
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--mlp", default="256x64,1024x256", help="comma-separated WIDTHxBATCH configurations")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--fused-adamw", action="store_true", help="also time AdamW(fused=True)")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    dt = getattr(torch, a.dtype)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    results = []

    for n in [int(s) for s in a.sizes.split(",") if s]:
        x = torch.randn(n, n, device=dev, dtype=dt)
        y = torch.randn(n, n, device=dev, dtype=dt)
        sec = timed(lambda: torch.matmul(x, y), sync, a.seconds)
        results.append({"name": f"matmul {n}", "value": 2 * n ** 3 / sec / 1e9, "unit": "GFLOP/s"})

    variants = [("", {})]
    if a.fused_adamw:
        variants.append((" fused-adamw", {"fused": True}))
    for cfg in [c for c in a.mlp.split(",") if c]:
        width, batch = (int(v) for v in cfg.split("x"))
        for suffix, opt_kwargs in variants:
            torch.manual_seed(0)
            layers = []
            for i in range(4):
                layers.append(torch.nn.Linear(width, width))
                if i < 3:
                    layers.append(torch.nn.ReLU())
            model = torch.nn.Sequential(*layers).to(device=dev, dtype=dt)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **opt_kwargs)
            inp = torch.randn(batch, width, device=dev, dtype=dt)
            target = torch.randint(0, width, (batch,), device=dev)

            def step():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(inp), target)
                loss.backward()
                opt.step()

            sec = timed(step, sync, a.seconds)
            results.append({"name": f"mlp step {width}x{batch}{suffix}", "value": sec * 1e3, "unit": "ms"})

    print(json.dumps({"torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
