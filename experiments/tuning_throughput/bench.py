"""Training throughput of our jitted tuning step vs a PyTorch restatement, same CPU, one run.

    python experiments/tuning_throughput/bench.py [--layers 4] [--clip-steps 2] [--clip-epochs 4]
        [--rows 1024] [--offline-epochs 4] [--offline-batches 16 256] [--one-thread offline]
        [--out results/results.json]

Launches, one after the other, ours.py and torch_step.py for each configuration (CLIP ViT-B/32 VPT
FixMatch-style step at batch 16; the offline model's cached visual step at each offline batch),
ours first, then torch with the core count as threads (and with one thread on --one-thread paths).
Each process times its own epochs after an untimed first one (compile, warm-up). Prints a Markdown
table (images/s = median over timed epochs; one image = one row, weak and strong views on the CLIP
path) and writes every process's record, the load averages and the command to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(script: str, *argv: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), *argv], check=True)
    return time.perf_counter() - t


def table(rows: list[dict]) -> str:
    """One line per process; a torch line carries ours' images/s over its own."""
    lines = ["| path | impl | batch | images/s | CPU s / image | ratio ours/torch |", "|---|---|---|---|---|---|"]
    for r in rows:
        impl = r["impl"] if r["impl"] == "ours" else f"torch, {r['threads']} thread{'s' * (r['threads'] > 1)}"
        ratio = f"**{r['ratio']:.2f}x**" if "ratio" in r else ""
        lines.append(f"| {r['label']} | {impl} | {r['batch']} | {r['images_per_s']:.2f} | "
                     f"{r['cpu_s_per_image']:.2e} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4, help="ViT-B/32 blocks (12 = the full tower)")
    ap.add_argument("--clip-steps", type=int, default=2, help="steps per epoch on the CLIP path")
    ap.add_argument("--clip-epochs", type=int, default=4, help="epochs, the first untimed")
    ap.add_argument("--rows", type=int, default=1024, help="offline: rows of cached pre-activations")
    ap.add_argument("--offline-epochs", type=int, default=4)
    ap.add_argument("--offline-batches", type=int, nargs="*", default=[16, 256])
    ap.add_argument("--one-thread", nargs="*", default=["offline"], choices=["clip", "offline"],
                    help="paths also timed with torch.set_num_threads(1)")
    ap.add_argument("--skip-clip", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "results.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(command=" ".join([Path(sys.executable).name, *sys.argv]), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                  cpus=os.cpu_count(), machine=platform.processor() or platform.machine(), load_start=load(),
                  runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        if not args.skip_clip:
            ckpt = str(Path(tmp) / "clip")
            run("torch_step.py", "checkpoint", ckpt, "--layers", str(args.layers))
            common = ["--ckpt", ckpt, "--steps", str(args.clip_steps), "--epochs", str(args.clip_epochs)]
            jobs.append(("clip", f"CLIP ViT-B/32 {args.layers}L VPT-16, weak+strong", 16, common))
        for b in args.offline_batches:
            jobs.append(("offline", "offline cached visual (BN affine)", b,
                         ["--rows", str(args.rows), "--epochs", str(args.offline_epochs)]))
        for path, label, batch, argv in jobs:
            parity = str(Path(tmp) / f"parity_{path}_{batch}.npz")  # ours writes it, torch reads it
            procs = [("ours", "ours.py", []), ("torch", "torch_step.py", [])]
            if path in args.one_thread:
                procs.append(("torch", "torch_step.py", ["--threads", "1"]))
            group = []
            for impl, script, extra in procs:
                dest = str(Path(tmp) / f"{impl}_{path}_{batch}_{len(group)}.json")
                before = load()
                wall = run(script, path, "--batch", str(batch), *argv, *extra, "--parity", parity, "--out", dest)
                r = json.loads(Path(dest).read_text())
                r.update(label=label, load_before=before, load_after=load(), process_wall_s=wall)
                group.append(r)
            for r in group[1:]:
                r["ratio"] = group[0]["images_per_s"] / r["images_per_s"]
                r["cpu_efficiency_ratio"] = r["cpu_s_per_image"] / group[0]["cpu_s_per_image"]
            record["runs"] += group
    record["load_end"] = load()
    record["table"] = table(record["runs"])
    out.write_text(json.dumps(record, indent=1))
    print(f"\nload average (1, 5, 15 min): start {record['load_start']}, end {record['load_end']}\n")
    print(record["table"])


if __name__ == "__main__":
    main()
