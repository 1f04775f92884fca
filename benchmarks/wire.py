"""Wire formats (``fasdl train --wire``), measured: accuracy to a target, bytes, encoding CPU.

1. **Accuracy.** For each model, seed and wire format, trains K-Reduce (default W = 4, K = 2,
   B = 32, A = 16, lr 0.05, momentum 0.9) and records the test accuracy of merged(t) at the end
   of every epoch. The run is the serial reference (``kreduce/reference.py``) with the wire
   applied, which equals a distributed run in one invocation bit for bit in every format
   (tests/integration/test_wire_job.py; ``--verify`` checks it again here for the first seed):
   the curve of the distributed job without evaluating it every epoch. The target is
   ``--target-frac`` of fp32's final accuracy (mean over the seeds) per model; reported: epochs
   to the target per seed, final and best accuracy, final test loss.
2. **Bytes.** What one iteration moves through the store (PUT + GET, each object once) for each
   model and for ResNet-18 (11.2 M values) at W = 8, K = 2 (``reference.bytes_per_iteration``).
3. **CPU.** Encode + decode time of a ResNet-18 chunk at K = 2 (5.6 M values) per format, median
   of 5 (int8 with its error feedback, as a sender runs it): the price of fewer bytes, paid by
   every sender and receiver.

Time per iteration on SeaweedFS is benchmarks/comm.py's (``--wire``).

    flock /tmp/fasdl-bench.lock .venv/bin/python benchmarks/wire.py            # ~10 min, 2 cores
    flock /tmp/fasdl-bench.lock .venv/bin/python benchmarks/wire.py --quick    # ~1 min smoke run
    ... benchmarks/wire.py --dataset synthetic:4000 --models cnn --wires fp32,fp16,int8,int8-noef

Results: benchmarks/results/wire-<time>.json and .txt (the printed tables).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fasdl.kreduce.config import JobConfig
from fasdl.kreduce.coordinator import PreparedJob, final_vector, prepare, run_job
from fasdl.kreduce.reference import bytes_per_iteration, reference_run
from fasdl.platform import open_platform
from fasdl.training import ModelVector, seeded_model
from fasdl.training import wire as codec
from fasdl.training.wire import WIRES, ErrorFeedback, decode

# Not a --wire choice: int8 with the residuals dropped, to measure what error feedback buys.
NO_FEEDBACK = "int8-noef"
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RESNET18_NUMEL = 11_173_962


def job_config(model: str, dataset: str, wire: str, seed: int, epochs: int) -> JobConfig:
    return JobConfig(
        model=model,
        dataset=dataset,
        num_workers=4,
        num_aggregators=2,
        batch_size_agg=32,
        batch_size_wor=16,
        epochs=epochs,
        lr=0.05,
        momentum=0.9,
        memory_mb=1769,
        seed=seed,
        wire=wire,
        store=f"memory://wire-bench-{model}-{wire}-{seed}",
        platform="inline",
        job_id="wire",
    )


def evaluate(job: PreparedJob, vector: np.ndarray) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy of the model whose vector is ``vector``."""
    meta = job.meta()
    model = seeded_model(job.cfg.model, job.cfg.seed, meta.num_classes, meta.input_shape)
    ModelVector.attach(model).load(vector)
    model.eval()
    x = torch.from_numpy(np.array(job.test.x))
    y = torch.from_numpy(np.array(job.test.y)).long()
    with torch.no_grad():
        logits = model(x)
    acc = float((logits.argmax(dim=1) == y).float().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    return acc, loss


@contextlib.contextmanager
def feedback_off() -> Iterator[None]:
    saved = codec.FEEDBACK_WIRES
    codec.FEEDBACK_WIRES = ()
    try:
        yield
    finally:
        codec.FEEDBACK_WIRES = saved


def curve(cfg: JobConfig, *, feedback: bool = True) -> dict[str, Any]:
    """Accuracy and loss at the end of every epoch, and the final vector."""
    if not feedback:
        with feedback_off():
            return curve(cfg)
    job = prepare(cfg)
    per_epoch: list[tuple[float, float]] = []

    def at(t: int, merged: np.ndarray) -> None:
        if t % job.iterations_per_epoch == 0:
            per_epoch.append(evaluate(job, merged))

    t0 = time.perf_counter()
    final = reference_run(cfg, job.partitions, job.meta(), job.total_iterations, on_iteration=at)
    return {
        "accuracy": [a for a, _ in per_epoch],
        "loss": [lo for _, lo in per_epoch],
        "numel": int(final.size),
        "iterations_per_epoch": job.iterations_per_epoch,
        "seconds": time.perf_counter() - t0,
        "final": final,
    }


def verify(cfg: JobConfig, expected: np.ndarray) -> bool:
    """Run the job distributed (inline platform) and compare its weights with the reference."""
    with open_platform("inline") as platform:
        run_job(cfg, platform=platform)
    return bool(np.array_equal(final_vector(cfg), expected))


def codec_seconds(numel: int, repeats: int = 5) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(numel) * 0.05).astype(np.float32)
    out: dict[str, dict[str, float]] = {}
    for wire in WIRES:
        enc, dec = [], []
        feedback = ErrorFeedback(wire)  # as a sender encodes: int8 with its residual
        for _ in range(repeats):
            t0 = time.perf_counter()
            blob, _ = feedback.encode("piece", x)
            t1 = time.perf_counter()
            decode(blob, wire)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
        out[wire] = {
            "encode_ms": 1000 * statistics.median(enc),
            "decode_ms": 1000 * statistics.median(dec),
            "bytes": len(blob),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--dataset", default="digits")
    p.add_argument(
        "--wires",
        default=",".join(WIRES),
        help=f"comma list of wire formats; {NO_FEEDBACK}: int8 without error feedback (ablation)",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--target-frac", type=float, default=0.98)
    p.add_argument("--verify", action="store_true", help="also run seed 0 distributed and compare")
    p.add_argument("--quick", action="store_true", help="mlp only, 4 epochs, one seed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    models = ["mlp"] if args.quick else args.models.split(",")
    epochs = 4 if args.quick else args.epochs
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    wires = args.wires.split(",")
    if "fp32" not in wires:
        p.error("--wires must include fp32, the reference of the target")

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    verified: dict[str, bool] = {}
    for model in models:
        runs[model] = {}
        for wire in wires:
            runs[model][wire] = []
            for seed in seeds:
                ablation = wire == NO_FEEDBACK
                cfg = job_config(model, args.dataset, "int8" if ablation else wire, seed, epochs)
                r = curve(cfg, feedback=not ablation)
                if args.verify and seed == seeds[0] and not ablation:
                    verified[f"{model}/{wire}"] = verify(cfg, r["final"])
                del r["final"]
                runs[model][wire].append(r)
                print(
                    f"{model} {wire} seed {seed}: final {r['accuracy'][-1]:.4f} "
                    f"({r['seconds']:.1f} s)",
                    file=sys.stderr,
                )

    lines = [
        f"Wire formats: K-Reduce W=4 K=2 B=32 A=16 on {args.dataset}, {epochs} epochs, "
        f"lr 0.05, momentum 0.9, seeds {seeds}; target = {args.target_frac:g} x fp32's final "
        "accuracy (mean over seeds)",
        "",
        f"{'model':<6} {'wire':<9} {'target':>7} {'epochs to target (per seed)':>30} "
        f"{'final acc':>10} {'best acc':>9} {'final loss':>11} {'MB/iteration':>13}",
    ]
    summary: dict[str, Any] = {}
    for model in models:
        fp32_final = statistics.mean(r["accuracy"][-1] for r in runs[model]["fp32"])
        target = args.target_frac * fp32_final
        summary[model] = {"target": target}
        for wire in wires:
            rs = runs[model][wire]
            to_target = [
                next((e + 1 for e, a in enumerate(r["accuracy"]) if a >= target), None) for r in rs
            ]
            on_wire = "int8" if wire == NO_FEEDBACK else wire
            mb = bytes_per_iteration(rs[0]["numel"], 4, 2, on_wire) / 1e6
            row = {
                "epochs_to_target": to_target,
                "final_accuracy": statistics.mean(r["accuracy"][-1] for r in rs),
                "best_accuracy": statistics.mean(max(r["accuracy"]) for r in rs),
                "final_loss": statistics.mean(r["loss"][-1] for r in rs),
                "mb_per_iteration": mb,
                "numel": rs[0]["numel"],
            }
            summary[model][wire] = row
            epochs_text = ", ".join("-" if e is None else str(e) for e in to_target)
            lines.append(
                f"{model:<6} {wire:<9} {target:>7.4f} {epochs_text:>30} "
                f"{row['final_accuracy']:>10.4f} {row['best_accuracy']:>9.4f} "
                f"{row['final_loss']:>11.4f} {mb:>13.4f}"
            )
    resnet = {
        w: bytes_per_iteration(RESNET18_NUMEL, 8, 2, w) / 1e6 for w in ("fp32", "fp16", "int8")
    }
    lines += ["", "ResNet-18 (11.2 M values), W=8 K=2, MB per iteration (PUT + GET):"]
    lines += [
        f"  {w:<5} {mb:>9.1f}  ({mb / resnet['fp32']:.3f} of fp32)" for w, mb in resnet.items()
    ]
    codec = codec_seconds(RESNET18_NUMEL // 2)
    lines += ["", "Encode + decode of a ResNet-18 chunk at K=2 (5.6 M values), median of 5:"]
    lines += [
        f"  {w:<5} encode {c['encode_ms']:>7.1f} ms  decode {c['decode_ms']:>7.1f} ms  "
        f"{c['bytes'] / 1e6:>6.1f} MB"
        for w, c in codec.items()
    ]
    if verified:
        lines += ["", "distributed run == reference, bit for bit (seed 0): " + json.dumps(verified)]
    text = "\n".join(lines)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    result = {
        "argv": sys.argv[1:],
        "epochs": epochs,
        "seeds": seeds,
        "summary": summary,
        "curves": {
            m: {w: [r["accuracy"] for r in rs] for w, rs in ws.items()} for m, ws in runs.items()
        },
        "resnet18_mb_per_iteration": resnet,
        "codec_resnet18_chunk": codec,
        "verified": verified,
    }
    if not args.quick:
        (RESULTS / f"wire-{stamp}.json").write_text(json.dumps(result, indent=1))
        (RESULTS / f"wire-{stamp}.txt").write_text(text + "\n")
    print(json.dumps(result) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
