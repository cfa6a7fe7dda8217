#!/usr/bin/env python3
"""GPU benchmark of fingerprint embedding and verification (issue 14): `oml embed` / `oml verify` against our own tuned
plain-PyTorch loop (llama_peer.py) in one run on the same GPU, on randomly initialised models of Llama-3.2-1B and
Llama-3.1-8B shape (bf16), perinucleus fingerprints with 16-token random-word keys (plus BOS) and 1-token responses.
Run it through scripts/gpu/bench-fingerprints.sh; it writes results.json and results.md into --out after every case,
so a case that fails or runs out of time leaves the others' numbers.

    python3 fingerprint_bench.py --oml oml --tokenizer DIR --work /tmp/fpb --out OUT --part 1b|8b
"""
import argparse
import json
import re
import os
import shutil
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("--oml", default="oml")
ap.add_argument("--tokenizer", required=True)
ap.add_argument("--work", default="/tmp/fpb")
ap.add_argument("--out", required=True)
ap.add_argument("--part", choices=["1b", "8b", "8b-16l", "all"], default="all",
                help="8b-16l: the 8B shape with 16 of its 32 layers (each layer's matrices as at 8B, 4.5B parameters), which fits an 80 GB card beside the base copy and AdamW; not part of all")
ap.add_argument("--strategy", default="random-word", help="fingerprint strategy of the sets (random-word: no model calls)")
ap.add_argument("--python", default=sys.executable)
ap.add_argument("--only", help="comma-separated indices of the part's cases to run (default all; 'none' for none)")
ap.add_argument("--make-model", choices=["1b", "8b", "8b-16l"], help="only write the random-init model of this shape under --work and print its folder")
ap.add_argument("--model-io", help="path of a published Oml.Bench: after the part's cases, its --model-io comparison on the "
                                   "part's model, and a PyTorch save of the same weights (safetensors save_file) in the same run")
ap.add_argument("--profile", action="store_true",
                help="profile the second optimizer step of every embedding (OML_PROFILE) and of the peer (torch.profiler), and "
                     "write both summaries (`oml profile summarize`: device time by kernel class and by range) to OUT/profiles; "
                     "the profiled epoch runs slower, so these runs' speeds are marked profiled and are not benchmark rows")
a = ap.parse_args()
os.makedirs(a.work, exist_ok=True)
os.makedirs(a.out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
# OML_TIMINGS=1: every oml command prints its phases at exit ("oml: timings: {...}"), kept with each result.
env = dict(os.environ, OML_PASSPHRASE="benchmark passphrase", OML_TIMINGS="1")
# Traces are large (hundreds of MB at 8b): written under --work, their summaries copied to OUT/profiles.
trace_dir = os.path.join(a.work, "profiles")
if a.profile:
    env.update(OML_PROFILE=trace_dir, OML_PROFILE_STEPS="2")
    os.makedirs(os.path.join(a.out, "profiles"), exist_ok=True)


def keep_profile(stem, label):
    """Moves the summaries of the trace stem (.md/.json) to OUT/profiles under the case's label, deletes the trace (so the
    next case's window gets the same name again)."""
    for ext in (".md", ".json"):
        if os.path.exists(stem + ext):
            shutil.move(stem + ext, os.path.join(a.out, "profiles", f"{label}{ext}"))
    if os.path.exists(stem + ".trace.json"):
        os.remove(stem + ".trace.json")
PEAK_TFLOPS = 989.4   # H200 SXM dense bf16, NVIDIA datasheet

SHAPES = {
    # Llama-3.2-1B and Llama-3.1-8B configurations (the published config.json values that set the compute).
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               head_dim=64, tie_word_embeddings=True, rope_factor=32.0),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, tie_word_embeddings=False, rope_factor=8.0),
}
SHAPES["8b-16l"] = dict(SHAPES["8b"], num_hidden_layers=16)
CASES = {
    "1b": [dict(shape="1b", count=1024, epochs=6, peer=True, verify=True, perinucleus=True),
           dict(shape="1b", count=4096, epochs=4, peer=True, budget_gb=74.5, label="1b×4,096 within 80 GB"),
           dict(shape="1b", count=1024, epochs=6, peer=False, mix=0.25, label="1b×1,024, β 0.25")],
    "8b": [dict(shape="8b", count=1024, epochs=4, peer=True),
           dict(shape="8b", count=24576, epochs=2, peer=False)],
    "8b-16l": [dict(shape="8b-16l", count=1024, epochs=4, peer=True)],
}
# The learning rate is set so low that early stopping never ends a run before its epochs: the work per epoch does not
# depend on it, and both sides use the same.
LR = "1e-6"
results_path = os.path.join(a.out, "results.json")
results = json.load(open(results_path)) if os.path.exists(results_path) else []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_model(shape):
    d = os.path.join(a.work, f"llama-{shape}")
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    s = SHAPES[shape]
    V, H, I, Lyr = 128256, s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    q, kv = s["num_attention_heads"] * s["head_dim"], s["num_key_value_heads"] * s["head_dim"]
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    if not s["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, H)
    for i in range(Lyr):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                       p + "self_attn.q_proj.weight": (q, H), p + "self_attn.k_proj.weight": (kv, H),
                       p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.o_proj.weight": (H, q),
                       p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H), p + "mlp.down_proj.weight": (H, I)})
    os.makedirs(d + ".tmp", exist_ok=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    shard, size, n, index = {}, 0, 0, {}
    names = sorted(shapes)
    def flush(last):
        nonlocal shard, size, n
        n += 1
        fname = f"model-{n:05d}.safetensors"
        save_file({k: v.cpu() for k, v in shard.items()}, os.path.join(d + ".tmp", fname))
        for k in shard:
            index[k] = fname
        shard, size = {}, 0
    for k in names:
        shp = shapes[k]
        t = torch.ones(shp, dtype=torch.bfloat16, device="cuda") if len(shp) == 1 else \
            (torch.randn(shp, generator=g, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16)
        shard[k] = t
        size += t.numel() * 2
        if size >= 4 << 30:
            flush(False)
    if shard:
        flush(True)
    total = len(set(index.values()))
    for i in range(1, total + 1):   # model-0000i-of-0000n names, as transformers writes them
        os.rename(os.path.join(d + ".tmp", f"model-{i:05d}.safetensors"), os.path.join(d + ".tmp", f"model-{i:05d}-of-{total:05d}.safetensors"))
    index = {k: v.replace(".safetensors", f"-of-{total:05d}.safetensors") for k, v in index.items()}
    json.dump({"metadata": {"total_size": sum(torch.Size(shapes[k]).numel() * 2 for k in shapes)}, "weight_map": index},
              open(os.path.join(d + ".tmp", "model.safetensors.index.json"), "w"))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I,
           "num_hidden_layers": Lyr, "num_attention_heads": s["num_attention_heads"], "num_key_value_heads": s["num_key_value_heads"],
           "head_dim": s["head_dim"], "vocab_size": V, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072,
           "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": s["rope_factor"], "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
           "tie_word_embeddings": s["tie_word_embeddings"], "bos_token_id": 128000, "eos_token_id": 128001,
           "torch_dtype": "bfloat16", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False}
    json.dump(cfg, open(os.path.join(d + ".tmp", "config.json"), "w"), indent=1)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(a.tokenizer, f), os.path.join(d + ".tmp", f))
    os.rename(d + ".tmp", d)
    torch.cuda.empty_cache()
    return d


def run(cmd, name, timeout=900):
    log(" ".join(cmd))
    t0 = time.perf_counter()
    with open(os.path.join(a.work, name + ".log"), "w") as f:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout)
        f.write(p.stdout)
    wall = time.perf_counter() - t0
    tail = "\n".join(p.stdout.strip().splitlines()[-25:])
    print(tail, flush=True)
    if p.returncode != 0:
        raise RuntimeError(f"{name} exited with {p.returncode}")
    return wall, p.stdout


def phases(text):
    """The phases an oml command printed with OML_TIMINGS=1 (seconds by name), or {} when it printed none."""
    for line in reversed(text.splitlines()):
        if line.startswith("oml: timings: "):
            return json.loads(line[len("oml: timings: "):])
    return {}


def flops_per_row(shape, tokens):
    """Model FLOPs of one training row: 6·(decoder parameters)·tokens + 6·H·V for the one position that needs logits."""
    s = SHAPES[shape]
    H, I, Lyr = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    q, kv = s["num_attention_heads"] * s["head_dim"], s["num_key_value_heads"] * s["head_dim"]
    body = Lyr * (H * q * 2 + H * kv * 2 + 3 * H * I)
    return 6 * body * tokens + 6 * H * 128256


def steady(epoch_seconds):
    later = sorted(epoch_seconds[1:]) or epoch_seconds
    return later[len(later) // 2]


def save_results():
    json.dump(results, open(results_path + ".tmp", "w"), indent=1)
    os.replace(results_path + ".tmp", results_path)
    lines = ["| case | side | fingerprints/s steady | MFU | end to end (s) | fingerprint-epochs/s end to end | peak memory (GiB) | micro-batches |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "model_io" in r:
            ps = r["peer_save"]
            lines.append(f"| {r['case']} | oml | " + ", ".join(f"{k} {v:.2f} s" for k, v in r["model_io"].items())
                         + f"; PyTorch save_file {ps['save_seconds']:.2f} s + fsync {ps['fsync_seconds']:.2f} s | | | | | |")
            continue
        if "fps_steady" not in r and "error" not in r:
            lines.append(f"| {r['case']} | {r['side']} | {r['keys_per_second']:,.0f} keys/s | | "
                         f"{r.get('generate_seconds') or r.get('verify_seconds'):.1f} | | | |")
            continue
        if "error" in r:
            lines.append(f"| {r['case']} | {r.get('side', '')} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(f"| {r['case']} | {r['side']} | {r['fps_steady']:,.0f} | {100 * r['mfu']:.1f} % | {r['wall_seconds']:.1f} | "
                     f"{r['fps_end_to_end']:,.0f} | {r['peak_memory_bytes'] / 2**30:.1f} | {r.get('plan', '')} |")
    # Where each whole command's time went (OML_TIMINGS=1; "(background)" phases overlap the others).
    lines += ["", "| case | phases (s) |", "|---|---|"]
    for r in results:
        if r.get("phases"):
            lines.append(f"| {r['case']} | " + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items()) + " |")
    open(os.path.join(a.out, "results.md"), "w").write("\n".join(lines) + "\n")


parts = ["8b", "1b"] if a.part == "all" else [a.part]
log(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
def peer_save(model):
    """PyTorch's save of the model's weights: load the shards onto the GPU, then time save_file of their CPU copies (as
    llama_peer.py saves) and the fsync that oml's atomic save also does."""
    from safetensors.torch import load_file
    idx = os.path.join(model, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    sd = {}
    for f in files:
        sd.update(load_file(os.path.join(model, f), device="cuda"))
    torch.cuda.synchronize()
    out = os.path.join(a.work, "peer-save.safetensors")
    t0 = time.perf_counter()
    save_file({k: v.cpu() for k, v in sd.items()}, out)
    t1 = time.perf_counter()
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t2 = time.perf_counter()
    size = os.path.getsize(out)
    os.remove(out)
    del sd
    torch.cuda.empty_cache()
    return {"save_seconds": t1 - t0, "fsync_seconds": t2 - t1, "bytes": size}


def served_verification(model_dir, set_path, count, label):
    """The prover's view of a deployed host: the embedded model served by `oml serve` (continuous batching, loaded once)
    and the whole `oml verify --endpoint` command against it (no libtorch in the client), at several concurrencies.
    The first call warms the server's kernels and is reported as such."""
    url_file = os.path.join(a.work, "serve.url")
    if os.path.exists(url_file):
        os.remove(url_file)
    t0 = time.perf_counter()
    serve_log = open(os.path.join(a.work, "serve.log"), "w")
    server = subprocess.Popen([a.oml, "serve", model_dir, "--dtype", "bfloat16", "--device", "cuda", "--port", "0", "--url-file", url_file,
                               "--max-num-seqs", "256"], stdout=serve_log, stderr=subprocess.STDOUT, env=env)
    try:
        while not (os.path.exists(url_file) and os.path.getsize(url_file) > 0):
            if server.poll() is not None or time.perf_counter() - t0 > 180:
                raise RuntimeError("oml serve did not come up (see serve.log)")
            time.sleep(0.1)
        ready = time.perf_counter() - t0
        url = open(url_file).read().strip()
        log(f"oml serve ready after {ready:.1f} s at {url}")
        # The client's default sends 16 keys a request (an array of prompts); "one key a request" is how it asked before.
        for name, n, conc, extra in (("warm-up", 64, 64, []), ("default", count, 16, []), ("64 at once", count, 64, []),
                                     ("256 at once", count, 256, []), ("256 at once, 64 a request", count, 256, ["--prompts-per-request", "64"]),
                                     ("256 at once, one key a request", count, 256, ["--prompts-per-request", "1"]), ("64 keys", 64, 64, [])):
            wall, text = run([a.oml, "verify", "--endpoint", url, "--fingerprints", set_path, "--count", str(n), "--concurrency", str(conc),
                              "--json"] + extra, f"verify-served-{n}-{conc}" + ("-" + "-".join(extra[1:]) if extra else ""))
            try:  # the report is the first JSON object in the output (OML_TIMINGS' line follows it)
                verdict = json.JSONDecoder().raw_decode(text[text.index("{"):])[0].get("verdict")
            except ValueError:
                verdict = None
            results.append({"case": f"{label} verify {n:,} keys through oml serve, {conc} in flight ({name})", "side": "oml",
                            "verify_seconds": wall, "keys_per_second": n / wall, "server_ready_seconds": ready, "verdict": verdict,
                            "phases": phases(text)})
            save_results()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()


if a.make_model:
    print(make_model(a.make_model))
    sys.exit(0)
for part in parts:
    chosen = None if not a.only else ([] if a.only == "none" else [int(i) for i in a.only.split(",")])
    for ci, c in enumerate(CASES[part]):
        if chosen is not None and ci not in chosen:
            continue
        label = c.get("label") or f"{c['shape']}×{c['count']:,}"
        try:
            model = make_model(c["shape"])
            set_path = os.path.join(a.work, f"set-{c['shape']}-{c['count']}.json")
            if not os.path.exists(set_path):
                wall, text = run([a.oml, "fingerprints", "generate", "--model", model, "--count", str(c["count"]), "--strategy", a.strategy,
                               "--random-word-keys", "--key-length", "16", "--response-length", "1", "--plaintext", "--out", set_path,
                               "--dtype", "bfloat16"], f"generate-{c['shape']}-{c['count']}")
                results.append({"case": f"{c['shape']}×{c['count']:,} key generation", "side": "oml", "generate_seconds": wall,
                                "keys_per_second": c["count"] / wall, "phases": phases(text)})
            out_dir = os.path.join(a.work, "embedded")
            shutil.rmtree(out_dir, ignore_errors=True)
            log_path = os.path.join(a.work, f"embed-{c['shape']}-{c['count']}.jsonl")
            if os.path.exists(log_path):
                os.remove(log_path)
            cmd = [a.oml, "embed", "--model", model, "--fingerprints", set_path, "--out", out_dir, "--epochs", str(c["epochs"]),
                   "--mix-fraction", str(c.get("mix", 0)), "--log", log_path, "--dtype", "bfloat16", "--lr", LR,
                   # The peer's training, pinned (oml embed's defaults moved to batches of 32 and one averaging at the end
                   # with issue 12): full batch, averaging λ 0.75 after every step, every epoch run.
                   "--batch-size", "0", "--averaging-lambda", "0.75", "--averaging-every", "step", "--no-early-stop"]
            if "budget_gb" in c:
                cmd += ["--memory-budget-gb", str(c["budget_gb"])]
            wall, text = run(cmd, f"embed-{c['shape']}-{c['count']}")
            if a.profile:
                keep_profile(os.path.join(trace_dir, "embed-steps-2-2"), f"oml-{c['shape']}-{c['count']}")
            epochs = [json.loads(l) for l in open(log_path)]
            secs = [e["seconds"] for e in epochs]
            per_epoch = [secs[0]] + [secs[i] - secs[i - 1] for i in range(1, len(secs))]
            plan = "; ".join(l.strip() for l in text.splitlines() if "micro-batches" in l)
            st = steady(per_epoch)
            rows = c["count"]
            results.append({"case": label, "side": "oml", "count": rows, "epochs": len(epochs), "epoch_seconds": per_epoch,
                            "fps_steady": rows / st, "mfu": flops_per_row(c["shape"], 17) * rows / st / (PEAK_TFLOPS * 1e12),
                            "wall_seconds": wall, "fps_end_to_end": rows * len(epochs) / wall,
                            "peak_memory_bytes": max(e.get("peak_memory_bytes") or 0 for e in epochs), "plan": plan,
                            "final_loss": epochs[-1]["loss"], "final_accuracy": epochs[-1]["accuracy"], "phases": phases(text),
                            "profiled": a.profile})
            save_results()
            if c.get("verify"):
                # The whole command at the case's count and at 64 keys (the difference is the marginal rate), each with
                # its phases: runtime start, set, libtorch and device init, model load, tokenizer, the greedy pass, report.
                for n in (c["count"], 64):
                    wall, text = run([a.oml, "verify", "--model", out_dir, "--fingerprints", set_path, "--count", str(n),
                                      "--dtype", "bfloat16", "--json"], f"verify-{c['shape']}-{n}")
                    results.append({"case": f"{label} verify {n:,} keys", "side": "oml", "verify_seconds": wall,
                                    "keys_per_second": n / wall, "phases": phases(text)})
                    save_results()
                served_verification(out_dir, set_path, c["count"], label)
            if c.get("perinucleus"):
                # Perinucleus responses after random-word keys: every key's next-token distribution is ranked.
                peri = os.path.join(a.work, f"set-{c['shape']}-{c['count']}-perinucleus.json")
                if os.path.exists(peri):
                    os.remove(peri)
                wall, text = run([a.oml, "fingerprints", "generate", "--model", model, "--count", str(c["count"]), "--strategy", "perinucleus",
                                  "--random-word-keys", "--key-length", "16", "--response-length", "1", "--plaintext", "--out", peri,
                                  "--dtype", "bfloat16"], f"generate-perinucleus-{c['shape']}-{c['count']}")
                results.append({"case": f"{c['shape']}×{c['count']:,} perinucleus generation", "side": "oml", "generate_seconds": wall,
                                "keys_per_second": c["count"] / wall, "phases": phases(text)})
                save_results()
            shutil.rmtree(out_dir, ignore_errors=True)
            if c.get("peer"):
                peer_out = os.path.join(a.work, "peer-out")
                pj = os.path.join(a.work, "peer.json")
                wall, text = run([a.python, os.path.join(here, "llama_peer.py"), model, "--count", str(rows), "--key-length", "17",
                                  "--epochs", str(c["epochs"]), "--lr", LR, "--out", peer_out, "--json", pj]
                                 + (["--profile", trace_dir] if a.profile else []), f"peer-{c['shape']}-{c['count']}")
                if a.profile:
                    # The same summary of the peer's trace, by oml's classes and the same range names.
                    took = re.search(r"peer profile: step 2 took ([0-9.]+) s", text)
                    stem = os.path.join(trace_dir, "peer-steps-2-2")
                    for fmt, ext in (([], ".md"), (["--json"], ".json")):
                        p = subprocess.run([a.oml, "profile", "summarize", stem + ".trace.json"] + fmt
                                           + (["--wall-seconds", took.group(1)] if took else []),
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                        open(stem + ext, "w").write(p.stdout)   # stderr (OML_TIMINGS' line, errors) stays out of the summary
                        if p.returncode != 0:
                            log(f"oml profile summarize failed ({p.returncode}): {p.stderr.strip()[-500:]}")
                    keep_profile(stem, f"peer-{c['shape']}-{c['count']}")
                pr = json.load(open(pj))
                st = steady(pr["epoch_seconds"])
                results.append({"case": label, "side": "PyTorch loop", "count": rows, "epochs": pr["epochs"], "epoch_seconds": pr["epoch_seconds"],
                                "fps_steady": rows / st, "mfu": flops_per_row(c["shape"], 17) * rows / st / (PEAK_TFLOPS * 1e12),
                                "wall_seconds": wall, "fps_end_to_end": rows * pr["epochs"] / wall,
                                "peak_memory_bytes": pr["peak_memory_bytes"], "plan": f"{pr['micro_rows']} rows a micro-batch",
                                "detail": pr, "profiled": a.profile})
                shutil.rmtree(peer_out, ignore_errors=True)
                save_results()
        except Exception as e:  # keep going: the other cases' numbers still come back
            log(f"{label}: FAILED: {e}")
            results.append({"case": label, "error": str(e)})
            save_results()
    if a.model_io:
        try:
            model = make_model(part)
            wall, text = run([a.model_io, "--model-io", model, "--device", "cuda", "--dtype", "bfloat16", "--rounds", "1",
                              "--work", a.work], f"model-io-{part}")
            rows = {l.split("|")[1].strip(): float(l.split("|")[2]) for l in text.splitlines()
                    if l.startswith("| ") and not l.startswith("| step") and l.count("|") == 4}
            log(f"peer save of {part}")
            ps = peer_save(model)
            log(json.dumps(ps))
            results.append({"case": f"{part} model I/O", "side": "oml", "model_io": rows, "peer_save": ps, "text": text[-2000:]})
        except Exception as e:
            log(f"{part} model I/O: FAILED: {e}")
            results.append({"case": f"{part} model I/O", "error": str(e)})
        save_results()
    if part == "8b" and a.part == "all":
        shutil.rmtree(os.path.join(a.work, "llama-8b"), ignore_errors=True)
save_results()
log("done")
