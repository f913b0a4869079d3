"""Side-by-side training-step benchmark: pyggml_train vs PyTorch eager, on the CPU or a GPU.

Each (framework, config) runs in its own subprocess so that peak RSS is its own.
One invocation measures everything and writes a JSON result and docs/benchmarks.md:

    python -m benchmarks.run                 # configs A, B, C + T scaling
    python -m benchmarks.run --smoke         # tiny config, 2 steps: the CI check
    python -m benchmarks.run --device cuda --configs C,C1024B8 --seq-scaling ''

A step is forward + backward + global-norm clipping + AdamW, same threads and batch for
all. Frameworks: ``ours`` (f32; OpenBLAS on this CPU's best kernels), ``ours-avx2`` (the
same with OpenBLAS forced to its Haswell kernels), ``ours-bf16`` (weight matmuls on bf16
casts of f32 master weights), ``torch`` (f32 eager) and ``torch-bf16`` (bf16 autocast, f32
master weights); on request ``ours-recompute`` (recompute='blocks') and
``torch-checkpoint`` (torch.utils.checkpoint around every block), e.g.
``--configs C1024,M --frameworks ours,ours-recompute,torch,torch-checkpoint
--seq-scaling ''``. ``--device cuda`` (or ``vulkan``) runs both frameworks there; a
framework without that device (PyTorch has no Vulkan; a CPU build of torch no CUDA) gets
a row that says so instead of numbers. Speed is reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .configs import CONFIGS, BenchConfig

ROOT = Path(__file__).resolve().parents[1]


# ---- one measurement, inside the child process -------------------------------------------------


def _batch(cfg: BenchConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size + 1), dtype=np.int32)
    return tokens[:, :-1], tokens[:, 1:]


# A row whose first step takes longer than this is measured on that step alone: a peer with
# no fast kernels for this CPU (PyTorch's bf16 autocast without AVX512-BF16 runs a step of
# config B in minutes) would otherwise hold the whole run for an hour.
SLOW_STEP_S = 60.0
MIN_MEASURED_S = 3.0
MAX_STEPS = 50


class StepPlan:
    """The steps of one row: ``warmup`` unmeasured, then at least ``steps`` measured, and more
    (up to MAX_STEPS) until MIN_MEASURED_S have been measured, so that a fast config's median
    is not taken over a fraction of a second. A first step slower than SLOW_STEP_S is the
    only, measured, step."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.total = warmup, warmup + steps
        self.measured_s = 0.0

    def __iter__(self):
        i = 0
        while i < self.total:
            yield i
            i += 1

    def measured(self, i: int, seconds: float) -> bool:
        if i == 0 and seconds > SLOW_STEP_S:
            self.warmup, self.total = 0, 1
        if i < self.warmup:
            return False
        self.measured_s += seconds
        short = self.measured_s < MIN_MEASURED_S and self.total - self.warmup < MAX_STEPS
        if i == self.total - 1 and short:
            self.total += 1
        return True


def _ours(
    cfg: BenchConfig,
    threads: int,
    steps: int,
    warmup: int,
    matmul_dtype: str = "f32",
    recompute: str = "none",
    device: str = "cpu",
) -> dict:
    from pyggml_train import ggml as G
    from pyggml_train import kernels
    from pyggml_train.gpt2 import GPT2
    from pyggml_train.step import OptimizerStep

    ctx = G.Context(device, threads)
    mc = cfg.gpt2_config(matmul_dtype=matmul_dtype, recompute=recompute)
    model = GPT2(mc, ctx=ctx, seed=0)
    train = model.graph(cfg.batch_size, cfg.block_size, "train")
    step = OptimizerStep(ctx, model.params, train)  # the trainer's step: clip 1.0, AdamW
    fwd_bwd, optimizer, losses = [], [], []
    kernels.reset_matmul_stats()
    plan = StepPlan(warmup, steps)
    for i in plan:
        stats = step([_batch(cfg, i)], 3e-4)
        losses.append(stats.loss)
        if plan.measured(i, stats.accumulate_s + stats.update_s):
            fwd_bwd.append(stats.accumulate_s)
            optimizer.append(stats.update_s)
    # Peak memory of training alone, before the extra graph that splits the timing.
    peak_rss_mb = _peak_rss_mb()
    # Which kernel ran each product of the training steps (patch 0019), and the rule's choice.
    choice = kernels.this_cpu()
    ran = kernels.kernel_summary(kernels.matmul_stats(), choice)
    # ggml runs forward and backward as one graph: time a forward-only graph on the same
    # batches and attribute the rest to the backward pass.
    forward_graph = model.graph(cfg.batch_size, cfg.block_size, "loss")
    forward = []
    for i in range(plan.total):
        idx, tgt = _batch(cfg, i)
        t0 = time.perf_counter()
        forward_graph.run(idx, tgt)
        if i >= plan.warmup:
            forward.append(time.perf_counter() - t0)
    times = {
        "forward": forward,
        "backward": [fb - f for fb, f in zip(fwd_bwd, forward, strict=True)],
        "optimizer": optimizer,
        "step": [fb + o for fb, o in zip(fwd_bwd, optimizer, strict=True)],
    }
    rule = {"f32": choice.f32, "bf16": choice.bf16, "notes": list(choice.notes)}
    return {
        "times": times,
        "losses": losses,
        "peak_rss_mb": peak_rss_mb,
        "kernels": ran,
        "kernel_rule": rule,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torch(
    cfg: BenchConfig,
    threads: int,
    steps: int,
    warmup: int,
    bf16: bool = False,
    checkpoint: bool = False,
    device: str = "cpu",
) -> dict:
    import torch

    from .torch_gpt2 import TorchStep

    step = TorchStep(cfg, threads, autocast_bf16=bf16, checkpoint=checkpoint, device=device)
    times: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": [], "step": []}
    losses = []
    plan = StepPlan(warmup, steps)
    for i in plan:
        idx, tgt = _batch(cfg, i)
        t0 = time.perf_counter()
        losses.append(step.forward(idx, tgt))
        t1 = time.perf_counter()
        step.backward()
        t2 = time.perf_counter()
        step.optimizer()
        t3 = time.perf_counter()
        if plan.measured(i, t3 - t0):
            times["forward"].append(t1 - t0)
            times["backward"].append(t2 - t1)
            times["optimizer"].append(t3 - t2)
            times["step"].append(t3 - t0)
    out = {"times": times, "losses": losses}
    if device == "cuda":
        out["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def unavailable(framework: str, device: str) -> str | None:
    """Why ``framework`` cannot run on ``device`` here, or None if it can."""
    if device == "cpu":
        return None
    if framework.startswith("torch"):
        if device != "cuda":
            return f"PyTorch has no {device} device"
        import torch

        if not torch.cuda.is_available():
            return f"this torch ({torch.__version__}) sees no CUDA device; install a CUDA build"
        return None
    from pyggml_train import ggml as G

    try:
        G.Context(device, 1)
    except ValueError as err:
        return str(err)
    return None


def measure_one(
    framework: str, cfg: BenchConfig, threads: int, steps: int, warmup: int, device: str = "cpu"
) -> dict:
    why_not = unavailable(framework, device)
    if why_not:
        return {"framework": framework, "config": cfg.name, "device": device, "skipped": why_not}
    runner = {
        "ours": _ours,
        "ours-avx2": _ours,
        "ours-bf16": lambda *a, **k: _ours(*a, matmul_dtype="bf16", **k),
        "ours-recompute": lambda *a, **k: _ours(*a, recompute="blocks", **k),
        "torch": _torch,
        "torch-bf16": lambda *a, **k: _torch(*a, bf16=True, **k),
        "torch-checkpoint": lambda *a, **k: _torch(*a, checkpoint=True, **k),
    }[framework]
    out = runner(cfg, threads, steps, warmup, device=device)
    on_cpu = device == "cpu"  # the BLAS and kernel rule name CPU kernels only
    med = {k: statistics.median(v) for k, v in out["times"].items()}
    return {
        "framework": framework,
        "config": cfg.name,
        "device": device,
        "threads": threads,
        "steps": len(out["times"]["step"]),
        "tokens_per_s": cfg.tokens_per_step / med["step"],
        "ms": {k: 1000 * v for k, v in med.items()},
        "gflops_per_s": cfg.flops_per_step() / med["step"] / 1e9,
        "peak_rss_mb": out.get("peak_rss_mb", _peak_rss_mb()),
        "device_peak_mb": out.get("device_peak_mb"),
        "first_loss": out["losses"][0],
        "blas": _our_blas() if framework.startswith("ours") and on_cpu else "",
        "kernels": out.get("kernels", []) if on_cpu else [],
        "kernel_rule": out.get("kernel_rule", {}) if on_cpu else {},
    }


def _our_blas() -> str:
    """The BLAS behind our matmuls in this process, as the library reports it."""
    import pyggml_train

    return pyggml_train.cpu_blas() or "none (ggml's own sgemm)"


# ---- the parent: run children, collect, report ----------------------------------------------


# OpenBLAS picks its kernels from the CPU unless OPENBLAS_CORETYPE says otherwise (some
# machines export OPENBLAS_CORETYPE=Haswell with OPENBLAS_L2_SIZE). "ours" runs with both
# unset, so this CPU's best kernels (AVX-512 here); "ours-avx2" forces the Haswell (AVX2) ones.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def child_env(framework: str, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in OPENBLAS_VARS}
    if framework == "ours-avx2":
        env["OPENBLAS_CORETYPE"] = "Haswell"
    return env


def _run_child(what: str, child_args: list[str], env: dict[str, str], label: str = ""):
    """Run ``main(["--child", what, *child_args])`` in a fresh process; its last stdout line
    is the JSON result. ``label`` names the run in the error if it fails."""
    # ROOT goes last on sys.path so that an installed pyggml_train wins over the source
    # tree (which has no compiled extension in a fresh clone).
    boot = f"import sys; sys.path.append({str(ROOT)!r}); from benchmarks.run import main; main()"
    cmd = [sys.executable, "-c", boot, "--child", what, *child_args]
    proc = subprocess.run(
        cmd, cwd=Path.home(), env=child_env(what, env), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{label or what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(
    framework: str,
    cfg: BenchConfig,
    threads: int,
    steps: int,
    warmup: int,
    env: dict[str, str],
    device: str = "cpu",
) -> dict:
    """One row: ``framework`` trained on ``cfg`` in a process of its own."""
    args = ["--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup)]
    args += ["--device", device]
    args += ["--config-json", json.dumps(cfg.__dict__)]
    return _run_child(framework, args, env, f"{framework} on {cfg.name}")


def _gflops(run, flops: float, min_s: float = 1.0) -> float:
    """The best rate of ``run`` over at least 3 repetitions and ``min_s`` seconds: a peak, so
    the fastest repetition (the others lost time to this shared machine, not to the math)."""
    run()  # warm-up: first-touch pages, packing buffers
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or spent < min_s:
        t0 = time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return flops / best / 1e9


def _ours_matmul(threads: int, m: int, n: int, k: int) -> float:
    """GFLOP/s of our CPU mul_mat, (m x k) times (n x k)^T, in ggml's threads."""
    from pyggml_train import ggml as G

    rng = np.random.default_rng(0)
    ctx = G.Context("cpu", threads)
    w, x = ctx.input((n, k)), ctx.input((m, k))
    graph = ctx.graph(G.mul_mat(w, x))
    w.set(rng.standard_normal((n, k), dtype=np.float32))
    x.set(rng.standard_normal((m, k), dtype=np.float32))
    return _gflops(graph.compute, 2.0 * m * n * k)


# The f32 matmuls whose GFLOP/s the table is read against, each measured in a process of its
# own (another library's idle threads spin for a while after a product and slow the next):
# numpy's BLAS, PyTorch and ours at n = 2048, and ours on GPT-2 124M's MLP product
# (1024 tokens x 768 -> 3072), the ceiling a training step sees.
PEAKS = ("numpy", "torch", "ours", "ours 1024x768x3072")


def matmul_peak(which: str, threads: int) -> float | None:
    """GFLOP/s of one of PEAKS (None for torch when it is not installed)."""
    n = 2048
    if which == "ours":
        return _ours_matmul(threads, n, n, n)
    if which == "ours 1024x768x3072":
        return _ours_matmul(threads, 1024, 3072, 768)
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    if which == "numpy":
        return _gflops(lambda: a @ a, 2.0 * n**3)
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    ta = torch.from_numpy(a)
    return _gflops(lambda: ta @ ta, 2.0 * n**3)


# The CPU features that decide which kernels can run: AVX-512 for OpenBLAS's SkylakeX sgemm,
# AVX512-BF16 / AMX for native bf16 matmuls (without them both frameworks convert bf16 to f32).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    cpu_id: list[str] = []  # family, model: "AMD EPYC" alone does not say which Zen
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith(("cpu family", "model\t")):
                cpu_id.append(line.split(":", 1)[1].strip())
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if len(cpu_id) == 2:
        cpu += f" (family {cpu_id[0]}, model {cpu_id[1]})"
    return {
        "cpu": cpu,
        "simd": " ".join(f for f in SIMD_FLAGS if f in flags) or "unknown",
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "openblas_env": ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in OPENBLAS_VARS),
    }


def render_markdown(result: dict) -> str:
    device = result.get("device", "cpu")
    on = "CPU" if device == "cpu" else f"{device}, peak RSS = host memory"
    lines = [
        f"# Training-step benchmark: pyggml_train vs PyTorch ({on})",
        "",
        f"Measured {result['date']} on {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores; SIMD: {result['machine']['simd']}), "
        f"{result['threads']} threads, "
        f"for each framework the fastest of {result['rounds']} round(s) run in turn with "
        f"its peers, each the median of at least {result['steps']} steps (and of at least "
        f"{MIN_MEASURED_S:.0f} s) after {result['warmup']} warm-up."
        + (
            " The machine's 1-minute load average was {:.1f} before the run and {:.1f} after "
            "it.".format(*result["load"])
            if "load" in result
            else ""
        ),
        "A step is forward + backward + global-norm clipping + AdamW. "
        "Reproduce: `pip install '.[bench]' && python -m benchmarks.run`.",
        "",
        *(
            [
                "Matmul peak measured in the same run (f32, n=2048 unless named): "
                + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["matmul_peak"].items())
                + ".",
                "",
            ]
            if result["matmul_peak"]
            else []
        ),
        "| config | framework | tokens/s | ms/step | fwd | bwd | opt | GFLOP/s | peak RSS MB "
        "| vs torch | vs torch-bf16 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skipped = [r for r in result["rows"] if "skipped" in r]
    rows = [r for r in result["rows"] if "skipped" not in r]

    def speedup(r: dict, peer_name: str) -> str:
        peer = next(
            (p for p in rows if p["config"] == r["config"] and p["framework"] == peer_name), None
        )
        return f"{r['tokens_per_s'] / peer['tokens_per_s']:.2f}x" if peer else ""

    for r in rows:
        ms = r["ms"]
        tok_s = f"{r['tokens_per_s']:.0f}" + ("†" if r["steps"] < result["steps"] else "")
        lines.append(
            f"| {r['config']} | {r['framework']} | {tok_s} | {ms['step']:.0f} | "
            f"{ms['forward']:.0f} | {ms['backward']:.0f} | {ms['optimizer']:.0f} | "
            f"{r['gflops_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {speedup(r, 'torch')} | "
            f"{speedup(r, 'torch-bf16')} |"
        )
    lines += [f"| {r['config']} | {r['framework']} | not run: {r['skipped']} |" for r in skipped]
    devices = [r for r in rows if r.get("device_peak_mb")]
    if devices:
        lines += ["", "Device memory at its peak (torch.cuda.max_memory_allocated):"]
        lines += [
            f"- {r['config']} {r['framework']}: {r['device_peak_mb']:.0f} MB" for r in devices
        ]
    if any(r["steps"] < result["steps"] for r in rows):
        lines += [
            "",
            f"† Its first step took over {SLOW_STEP_S:.0f} s, so that one step (no warm-up) is "
            "the measurement.",
        ]
    kernels = sorted({(r["framework"], r["blas"]) for r in rows if r.get("blas")})
    if kernels:
        lines += ["", "BLAS behind our matmuls, as the library reported it in each run:"]
        lines += [f"- {fw}: {blas}" for fw, blas in kernels]
    ran = {(r["config"], r["framework"]): r["kernels"] for r in rows if r.get("kernels")}
    if ran:
        lines += [
            "",
            "Kernels that ran the products of our training steps (op, weight type: kernel and "
            "its share of the multiply-adds; attention's products are inside its own op):",
        ]
        lines += [f"- {cfg} {fw}: {'; '.join(k)}" for (cfg, fw), k in ran.items()]
    rule = next((r["kernel_rule"] for r in rows if r.get("kernel_rule")), None)
    if rule:
        notes = "".join(f"; {n}" for n in rule["notes"])
        lines += [
            "",
            f"Kernel rule for this CPU and build (`pyggml_train.kernels.this_cpu()`): f32 "
            f"products on {rule['f32']}, bf16 products on {rule['bf16']}{notes}.",
        ]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- results: written by benchmarks/run.py -->", "<!-- end of results -->"


def write_results(path: Path, table: str) -> None:
    """Replace the results block of ``path``, keeping the hand-written analysis around it."""
    block = f"{BEGIN}\n{table}{END}\n"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = block + text
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--configs", default="A,B,C", help="comma-separated names from benchmarks/configs.py"
    )
    ap.add_argument(
        "--seq-scaling", default="512,1024", help="extra block sizes for config C ('' for none)"
    )
    ap.add_argument(
        "--frameworks",
        default="ours,ours-avx2,ours-bf16,torch,torch-bf16",
        help="for the configs; the block-size scaling runs ours and torch of these",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--device", default="cpu", help="cpu, cuda or vulkan: where both frameworks train"
    )
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="run every row of a config this many times, alternating frameworks, and keep each "
        "framework's fastest round (this shared machine's noise only ever slows a run down)",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="tiny config, 2 steps: proves the harness runs"
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config-json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child and args.child.startswith("peak:"):
        print(json.dumps(matmul_peak(args.child.removeprefix("peak:"), args.threads)))
        return
    if args.child:
        cfg = BenchConfig(**json.loads(args.config_json))
        row = measure_one(args.child, cfg, args.threads, args.steps, args.warmup, args.device)
        print(json.dumps(row))
        return

    if args.smoke:
        configs = [CONFIGS["smoke"]]
        args.steps, args.warmup, args.rounds = 2, 1, 1
        scaling = []
    else:
        configs = [CONFIGS[c] for c in args.configs.split(",") if c]
        scaling = [CONFIGS["C"].with_block_size(int(t)) for t in args.seq_scaling.split(",") if t]
    this_machine = machine()
    frameworks = args.frameworks.split(",")
    if "ours-avx2" in frameworks and "avx512f" not in this_machine["simd"].split():
        # Without AVX-512 OpenBLAS picks its Haswell kernels anyway: the row would repeat "ours".
        frameworks.remove("ours-avx2")
        print("no AVX-512 on this CPU: ours-avx2 would run the same kernels as ours, skipped")
    runs = [(cfg, frameworks) for cfg in configs]
    runs += [(cfg, [f for f in frameworks if f in ("ours", "torch")]) for cfg in scaling]
    env = dict(os.environ)
    load_before = os.getloadavg()[0]  # this machine may be shared: say how busy it was
    rows = []
    for cfg, fws in runs:
        best: dict[str, dict] = {}
        for rnd in range(args.rounds):
            for fw in fws:
                if fw in best and ("skipped" in best[fw] or best[fw]["steps"] < args.steps):
                    continue  # a single slow step (StepPlan) is not worth repeating
                row = _child(fw, cfg, args.threads, args.steps, args.warmup, env, args.device)
                row["round"] = rnd + 1
                if "skipped" in row:
                    print(f"{cfg.name:>18} {fw:>10}: not run: {row['skipped']}", flush=True)
                    best[fw] = row
                    continue
                print(
                    f"{cfg.name:>18} {fw:>10} (round {rnd + 1}): "
                    f"{row['tokens_per_s']:8.1f} tok/s  {row['ms']['step']:8.1f} ms/step  "
                    f"{row['peak_rss_mb']:7.0f} MB",
                    flush=True,
                )
                if fw not in best or row["tokens_per_s"] > best[fw]["tokens_per_s"]:
                    best[fw] = row
        rows += [best[fw] for fw in fws]
    peaks = {}
    if args.device == "cpu":  # the CPU's matmul ceiling; a GPU row is read against its own
        peaks = {p: _run_child(f"peak:{p}", ["--threads", str(args.threads)], env) for p in PEAKS}
        peaks = {p: v for p, v in peaks.items() if v is not None}
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "machine": this_machine,
        "threads": args.threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "matmul_peak": peaks,
        "rows": rows,
        "load": [load_before, os.getloadavg()[0]],
    }
    if not args.smoke:
        Path(args.json).write_text(json.dumps(result, indent=1))
        write_results(Path(args.out), render_markdown(result))
    print(render_markdown(result))


if __name__ == "__main__":
    main()
