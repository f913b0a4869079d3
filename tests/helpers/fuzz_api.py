"""Random calls into the Python graph API, run in worker processes so a crash is counted.

The promise under test (docs/reliability.md): no call of the public API ends the
interpreter. Bad input raises ValueError or TypeError; an assert that still fires inside
a compute thread raises RuntimeError (patch 0017). Every op result that is computed is
also compared with a float64 numpy reference when its inputs are finite, so the fuzzer
checks values, not only survival.

A *scenario* is a fresh Context with a few leaf tensors (random shapes, dtypes, NaN/Inf,
out-of-range ids) followed by random calls on them: ops with compatible or random
operands, views and permutations, graph builds with and without backward, computes,
reads, writes, nodes reused across graphs, tensors of a Context the caller dropped,
mixed Contexts, wrong devices and thread counts. Scenario ``i`` of seed ``s`` is
reproducible on its own: ``python tests/helpers/fuzz_api.py --seed s --only i``.

    scripts/fuzz_api.py --calls 10000 --procs 2   # the driver
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALLS_PER_SCENARIO = 12
SCENARIOS_PER_WORKER = 40  # a worker process runs this many, then the driver starts another

# -- the worker side ------------------------------------------------------------------------


@dataclass
class Value:
    """A tensor of the scenario and its float64 reference (None: not known)."""

    t: object  # G.Tensor
    ref: np.ndarray | None


class Scenario:
    """One Context and the random calls made on it; counts each call's outcome."""

    def __init__(self, seed: int, index: int):
        from pyggml_train import ggml as G

        self.G = G
        self.rng = np.random.default_rng([seed, index])
        self.outcomes: Counter[str] = Counter()
        self.details: list[str] = []
        self.ctx = G.Context("cpu", threads=int(self.rng.integers(1, 3)))
        self.values: list[Value] = []
        self.leaves: list[Value] = []
        self.graphs: list[object] = []
        for _ in range(int(self.rng.integers(2, 5))):
            self._new_leaf()

    # -- random material ------------------------------------------------------------------------
    def _shape(self) -> tuple[int, ...]:
        if self.values and self.rng.random() < 0.5:  # reuse a shape: ops then fit more often
            return self.values[int(self.rng.integers(len(self.values)))].t.shape
        nd = int(self.rng.integers(1, 5))
        return tuple(int(d) for d in self.rng.integers(1, 6, size=nd))

    def _data(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        if dtype == "i32":
            return self.rng.integers(-2, 8, size=shape).astype(np.int32)
        a = self.rng.standard_normal(shape)
        if self.rng.random() < 0.15:
            a.flat[int(self.rng.integers(a.size))] = self.rng.choice([np.nan, np.inf, -np.inf])
        return a.astype(np.float32 if dtype == "f32" else np.float16)

    def _new_leaf(self) -> None:
        dtype = str(self.rng.choice(["f32", "f32", "f32", "i32", "f16"]))
        shape = self._shape()
        kind = int(self.rng.integers(3))
        if kind == 0 and dtype == "f32":
            t = self.ctx.param(shape)
        else:
            t = self.ctx.input(shape, dtype)
        data = self._data(shape, dtype)
        t.set(data)
        v = Value(t, data.astype(np.float64))
        self.leaves.append(v)
        self.values.append(v)

    def _pick(self) -> Value:
        return self.values[int(self.rng.integers(len(self.values)))]

    def _pick_like(self, shape: tuple[int, ...]) -> Value:
        same = [v for v in self.values if v.t.shape == shape]
        if same and self.rng.random() < 0.8:
            return same[int(self.rng.integers(len(same)))]
        return self._pick()

    # -- calls ----------------------------------------------------------------------------------
    def run(self, n_calls: int) -> None:
        actions = [
            (self.op_unary, 4),
            (self.op_binary, 4),
            (self.op_layout, 3),
            (self.op_special, 3),
            (self.compute, 4),
            (self.set_leaf, 2),
            (self.read, 1),
            (self.backward, 2),
            (self.reuse_node, 1),
            (self.other_context, 1),
            (self.misuse, 1),
        ]
        weights = np.array([w for _, w in actions], dtype=float)
        for _ in range(n_calls):
            fn = actions[int(self.rng.choice(len(actions), p=weights / weights.sum()))][0]
            self.call(fn)

    def call(self, fn) -> None:
        try:
            fn()
        except (ValueError, TypeError) as e:
            self.outcomes["rejected"] += 1
            if not str(e):
                self.outcomes["rejected_without_message"] += 1
                self.details.append(f"{fn.__name__}: {type(e).__name__} without a message")
        except RuntimeError as e:
            # patch 0017's guard: an assert inside compute became an exception
            self.outcomes["compute_error"] += 1
            self.details.append(f"{fn.__name__}: RuntimeError: {str(e)[:300]}")
        except Mismatch as e:
            self.outcomes["mismatch"] += 1
            self.details.append(f"{fn.__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - an exception type the contract does not name
            self.outcomes["unexpected"] += 1
            self.details.append(f"{fn.__name__}: {type(e).__name__}: {str(e)[:300]}")
        else:
            self.outcomes["ok"] += 1

    def _add(self, t, ref) -> None:
        self.values.append(Value(t, ref))

    def op_unary(self) -> None:
        G, a = self.G, self._pick()
        name = str(
            self.rng.choice(
                ["gelu", "gelu_erf", "silu", "relu", "tanh", "exp", "log", "sqr", "sqrt", "neg"]
                + ["sum", "sum_rows", "mean", "norm", "rms_norm", "soft_max", "cont", "scale"]
                + ["clamp", "cast", "diag_mask_inf"]
            )
        )
        x = a.ref
        if name == "scale":
            s = float(self.rng.choice([0.5, -2.0, np.nan]))
            self._add(G.scale(a.t, s), None if x is None else x * s)
        elif name == "clamp":
            lo, hi = sorted(self.rng.standard_normal(2)) if self.rng.random() < 0.8 else (1, -1)
            self._add(G.clamp(a.t, lo, hi), None if x is None else np.clip(x, lo, hi))
        elif name == "cast":
            dtype = str(self.rng.choice(["f32", "f16", "bf16", "i32"]))
            self._add(G.cast(a.t, dtype), x if dtype == "f32" else None)
        elif name == "diag_mask_inf":
            n_past = int(self.rng.integers(-1, 3))
            out = G.diag_mask_inf(a.t, n_past)
            ref = None
            if x is not None and x.ndim >= 2:
                rows, cols = np.indices(x.shape[-2:])
                ref = np.where(cols > rows + n_past, -np.inf, x)
            self._add(out, ref)
        elif name == "soft_max":
            s = float(self.rng.choice([1.0, 0.3]))
            out = G.soft_max(a.t, scale=s)
            ref = None
            if x is not None:
                z = np.exp(s * x - np.max(s * x, axis=-1, keepdims=True))
                ref = z / z.sum(axis=-1, keepdims=True)
            self._add(out, ref)
        else:
            out = getattr(G, name)(a.t)
            self._add(out, None if x is None else _unary_ref(name, x))

    def op_binary(self) -> None:
        G, a = self.G, self._pick()
        b = self._pick_like(a.t.shape)
        name = str(self.rng.choice(["add", "sub", "mul", "div", "mul_mat", "matmul", "linear"]))
        ra, rb = a.ref, b.ref
        if name in ("add", "sub", "mul", "div"):
            out = getattr(G, name)(a.t, b.t)
            ref = None
            if ra is not None and rb is not None:
                with np.errstate(all="ignore"):
                    ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply,
                           "div": np.divide}[name](ra, rb)  # fmt: skip
            self._add(out, ref)
        elif name == "mul_mat":
            out = G.mul_mat(a.t, b.t)
            ref = None
            if ra is not None and rb is not None and ra.ndim == rb.ndim == 2:
                ref = rb @ ra.T
            self._add(out, ref)
        elif name == "matmul":
            out = G.matmul(a.t, b.t)
            ref = ra @ rb if ra is not None and rb is not None and ra.ndim == rb.ndim == 2 else None
            self._add(out, ref)
        else:
            out = G.linear(a.t, b.t)
            ref = ra @ rb.T if ra is not None and rb is not None and ra.ndim == 2 else None
            self._add(out, ref)

    def op_layout(self) -> None:
        G, a = self.G, self._pick()
        x = a.ref
        kind = int(self.rng.integers(5))
        if kind == 0:
            self._add(G.transpose(a.t), None if x is None else np.swapaxes(_pad2(x), -1, -2))
        elif kind == 1:
            axes = tuple(int(i) for i in self.rng.permutation(a.t.ndim))
            if self.rng.random() < 0.1:
                axes = axes + (0,)
            self._add(G.permute(a.t, axes), None if x is None else np.transpose(x, axes))
        elif kind == 2:
            n = a.t.size
            divs = [d for d in range(1, n + 1) if n % d == 0]
            d = int(self.rng.choice(divs))
            shape = (d, -1) if self.rng.random() < 0.5 else (d, n // d + int(self.rng.integers(2)))
            out = G.reshape(a.t, shape)
            self._add(out, None if x is None else x.reshape(out.shape))
        elif kind == 3:
            # a random sub-view: element offset and shape inside a's last axes
            shape = tuple(max(1, int(self.rng.integers(1, d + 2))) for d in a.t.shape)
            offset = int(self.rng.integers(0, 3))  # elements (G.view takes element offsets)
            out = G.view(a.t, shape, offset=offset)
            self._add(out, None)
        else:
            self._add(G.cont(a.t), x)

    def op_special(self) -> None:
        G = self.G
        kind = int(self.rng.integers(8))
        if kind >= 4:
            self.op_more(kind)
        elif kind == 0:  # embedding lookup with ids that may be out of range
            table = self._pick()
            idx = self._pick()
            out = G.get_rows(table.t, idx.t)
            ref = None
            if table.ref is not None and idx.ref is not None and table.ref.ndim == 2:
                ids = idx.ref.astype(np.int64)
                if ids.min(initial=0) >= 0 and ids.max(initial=0) < table.ref.shape[0]:
                    ref = table.ref[ids]
            self._add(out, ref)
        elif kind == 1:
            logits = self._pick()
            targets = self._pick()
            n_classes = None if self.rng.random() < 0.7 else int(self.rng.integers(0, 6))
            out = G.cross_entropy_loss_sparse(logits.t, targets.t, n_classes)
            self._add(out, _ce_ref(logits.ref, targets.ref, n_classes))
        elif kind == 2:
            q = self._pick()
            out = G.attn_causal(
                q.t, self._pick_like(q.t.shape).t, self._pick_like(q.t.shape).t, 0.5
            )
            self._add(out, None)
        else:
            dst, rows, idx = self._pick(), self._pick(), self._pick()
            self._add(G.set_rows(dst.t, rows.t, idx.t), None)
            self._forget()  # computing it writes into dst

    def op_more(self, kind: int) -> None:
        """Backward kernels, copies, masks, dense losses and optimizer steps."""
        G = self.G
        a = self._pick()
        b = self._pick_like(a.t.shape)
        if kind == 4:
            name = str(self.rng.choice(["out_prod", "norm_back", "gelu_back", "gelu_erf_back"]))
            self._add(getattr(G, name)(a.t, b.t), None)
        elif kind == 5:
            if self.rng.random() < 0.5:
                self._add(G.cpy(a.t, b.t), None)
                self._forget()  # computing it writes into b
            else:
                self._add(G.soft_max(a.t, mask=b.t, scale=0.5), None)
        elif kind == 6:
            self._add(G.cross_entropy_loss(a.t, b.t), None)
        else:
            hp = self.ctx.input((int(self.rng.choice([2, 7, 8])),))
            hp.set(np.array([1e-3, 0.9, 0.95, 1e-8, 0.1, 1.0, 1.0, 1.0][: hp.shape[0]]))
            if hp.shape[0] == 2:
                out = G.opt_step_sgd(a.t, b.t, hp)
            else:
                m, v = self._pick_like(a.t.shape), self._pick_like(a.t.shape)
                out = G.opt_step_adamw(a.t, b.t, m.t, v.t, hp)
            self._add(out, None)
            self._forget()  # computing it updates a (and m, v) in place

    def compute(self) -> None:
        v = self._pick()
        g = self.ctx.graph(v.t)
        self.graphs.append(g)
        g.compute(threads=int(self.rng.integers(1, 3)))
        if v.t.is_contiguous:
            got = v.t.numpy().astype(np.float64)
            if _compare(v, got):
                self.outcomes["value_checked"] += 1

    def backward(self) -> None:
        G = self.G
        v = self._pick()
        loss = G.sum(v.t).set_loss()
        g = self.ctx.graph(loss, backward=True)
        self.graphs.append(g)
        g.compute()
        for p in self.leaves:
            if p.t.is_param and self.rng.random() < 0.5:
                g.grad(p.t)

    def set_leaf(self) -> None:
        v = self.leaves[int(self.rng.integers(len(self.leaves)))]
        kind = int(self.rng.integers(4))
        shape = v.t.shape if kind else self._shape()
        dtype = v.t.dtype if kind != 1 else str(self.rng.choice(["f32", "i32"]))
        data = self._data(shape, "f16" if dtype == "f16" else dtype)
        if kind == 2 and dtype == "i32":
            data = data * 1000  # far out of any vocabulary
        v.t.set(data)
        for w in self.values:  # results computed from it are stale now
            if w not in self.leaves:
                w.ref = None
        v.ref = np.asarray(data, dtype=np.float64).reshape(v.t.shape)

    def _forget(self) -> None:
        """Some tensor's data changed behind the references: trust none of them."""
        for w in self.values:
            w.ref = None

    def read(self) -> None:
        v = self._pick()
        v.t.numpy()

    def reuse_node(self) -> None:
        v = self._pick()
        g1 = self.ctx.graph(v.t)
        if self.rng.random() < 0.5:
            del g1
            gc.collect()
            g2 = self.ctx.graph(v.t)
            g2.compute()
        else:
            g2 = self.ctx.graph(v.t)  # the node belongs to g1: ValueError
            self.graphs += [g1, g2]

    def other_context(self) -> None:
        G = self.G
        other = G.Context("cpu", threads=1)
        t = other.input(self._pick().t.shape)
        t.set(np.ones(t.shape, np.float32))
        r = G.add(t, t)
        del other  # the Python object goes; the tensors keep what they need alive
        gc.collect()
        if self.rng.random() < 0.5:
            G.Graph(r).compute()
            np.testing.assert_array_equal(r.numpy(), 2 * np.ones(t.shape, np.float32))
        else:
            G.add(t, self._pick().t)  # mixes Contexts: ValueError

    def misuse(self) -> None:
        G = self.G
        kind = int(self.rng.integers(7))
        if kind == 0:
            G.Context(str(self.rng.choice(["cuda", "metal", "tpu", ""])))
        elif kind == 1:
            self.ctx.threads = int(self.rng.choice([0, -1, 1, 2]))
        elif kind == 2:
            self.ctx.tensor(self._shape(), str(self.rng.choice(["f64", "bf16", "q8_0"])))
        elif kind == 3:
            self.ctx.tensor(
                tuple(int(d) for d in self.rng.integers(-1, 3, size=int(self.rng.integers(1, 6))))
            )
        elif kind == 4:
            v, value = self._pick(), float(self.rng.choice([0.0, np.nan]))
            v.t.fill(value)
            self._forget()
            v.ref = np.full(v.t.shape, value)
        elif kind == 5:
            G.Graph([])
        else:
            g = self.ctx.graph(self._pick().t)
            self.graphs.append(g)
            g.grad(self._pick().t)


class Mismatch(Exception):
    """A computed value differs from its numpy reference."""


def _pad2(x: np.ndarray) -> np.ndarray:
    return x.reshape((1,) * (2 - x.ndim) + x.shape) if x.ndim < 2 else x


def _unary_ref(name: str, x: np.ndarray) -> np.ndarray | None:
    with np.errstate(all="ignore"):
        if name == "gelu":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        if name == "gelu_erf":
            return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        if name == "silu":
            return x / (1 + np.exp(-x))
        if name == "relu":
            return np.maximum(x, 0)
        if name in ("tanh", "exp", "log", "sqrt"):
            return getattr(np, name)(x)
        if name == "sqr":
            return x * x
        if name == "neg":
            return -x
        if name == "sum":
            return np.asarray(x.sum())
        if name == "sum_rows":
            return x.sum(axis=-1, keepdims=True)
        if name == "mean":
            return x.mean(axis=-1, keepdims=True)
        if name == "norm":
            c = x - x.mean(axis=-1, keepdims=True)
            return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + 1e-5)
        if name == "rms_norm":
            return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6)
        if name == "cont":
            return x
    return None


def _ce_ref(logits: np.ndarray | None, targets: np.ndarray | None, n_classes: int | None):
    if logits is None or targets is None or targets.shape != logits.shape[:-1]:
        return None
    n = logits.shape[-1] if n_classes is None else n_classes
    if n < 1 or n > logits.shape[-1]:
        return None
    z = logits.reshape(-1, logits.shape[-1])[:, :n]
    t = targets.reshape(-1).astype(np.int64)
    if t.max(initial=-1) >= n:
        return None
    keep = t >= 0
    if not keep.any():
        return None
    with np.errstate(all="ignore"):
        m = z.max(axis=-1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[:, 0]
        picked = z[np.arange(len(t)), np.where(keep, t, 0)]
        return np.asarray(np.mean((lse - picked)[keep]))


def _compare(v: Value, got: np.ndarray) -> bool:
    """Whether ``got`` could be checked (a finite, moderate reference); raises on a mismatch."""
    ref = v.ref
    if ref is None or ref.shape != got.shape or not np.all(np.isfinite(ref)):
        return False
    if np.max(np.abs(ref), initial=0) > 1e4:
        return False
    tol = 2e-3 if v.t.dtype in ("f16", "bf16") else 1e-4
    if not np.allclose(got, ref, rtol=tol * 10, atol=tol):
        err = float(np.max(np.abs(got - ref)))
        raise Mismatch(f"{v.t!r}: max abs error {err:.3g} against the float64 reference")
    return True


def worker(seed: int, start: int, stop: int) -> None:
    """Run scenarios [start, stop); print one JSON line per scenario."""
    for i in range(start, stop):
        print(json.dumps({"start": i}), flush=True)
        s = Scenario(seed, i)
        s.run(CALLS_PER_SCENARIO)
        details = [f"scenario {i}: {d}" for d in s.details]
        print(json.dumps({"done": i, "outcomes": s.outcomes, "details": details}), flush=True)


# -- the driver side ------------------------------------------------------------------------


@dataclass
class Report:
    calls: int = 0
    deaths: list[dict] = field(default_factory=list)  # scenario, return code, stderr tail
    outcomes: Counter = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "deaths": self.deaths,
            "outcomes": dict(self.outcomes),
            "details": self.details[:50],
            "seconds": round(self.seconds, 1),
        }


def _spawn(seed: int, start: int, stop: int) -> subprocess.Popen:
    # only the driver imports helpers.env: a worker runs this file as a script under
    # PYTHONSAFEPATH, without tests/ on its path
    from helpers.env import child_env  # noqa: PLC0415

    # the workers import the same copy as the driver
    env = child_env(PYTHONFAULTHANDLER="1", OMP_NUM_THREADS="2")
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", str(seed), str(start), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def run(calls: int, procs: int = 2, seed: int = 0, timeout_s: float = 600.0) -> Report:
    """About ``calls`` random calls in scenarios spread over ``procs`` worker processes at a
    time. A worker that dies is counted, and its remaining scenarios go to a new one."""
    n_scen = math.ceil(calls / CALLS_PER_SCENARIO)
    todo = [
        (a, min(a + SCENARIOS_PER_WORKER, n_scen)) for a in range(0, n_scen, SCENARIOS_PER_WORKER)
    ]
    report, t0 = Report(), time.perf_counter()
    running: list[tuple[subprocess.Popen, int, int]] = []
    while todo or running:
        while todo and len(running) < procs:
            a, b = todo.pop(0)
            running.append((_spawn(seed, a, b), a, b))
        p, a, b = running.pop(0)
        try:
            out, err = p.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            report.deaths.append({"scenario": a, "returncode": "timeout", "stderr": err[-2000:]})
            continue
        last_start = a
        for line in out.splitlines():
            msg = json.loads(line)
            if "start" in msg:
                last_start = msg["start"]
            else:
                report.outcomes.update(msg["outcomes"])
                report.details += msg["details"]
        if p.returncode != 0:
            report.deaths.append(
                {"scenario": last_start, "returncode": p.returncode, "stderr": err[-2000:]}
            )
            if last_start + 1 < b:
                todo.append((last_start + 1, b))
    report.calls = sum(
        n
        for k, n in report.outcomes.items()
        if k not in ("rejected_without_message", "value_checked")
    )
    report.seconds = time.perf_counter() - t0
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, help="run scenario ONLY in this process (to debug it)")
    ap.add_argument("--json", type=Path, help="write the report here")
    args = ap.parse_args()
    if args.only is not None:
        s = Scenario(args.seed, args.only)
        s.run(CALLS_PER_SCENARIO)
        print(dict(s.outcomes), *s.details, sep="\n")
        return
    report = run(args.calls, args.procs, args.seed, timeout_s=3600)
    text = json.dumps(report.as_dict(), indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    bad = sum(report.outcomes[k] for k in ("unexpected", "mismatch", "compute_error"))
    sys.exit(1 if report.deaths or bad else 0)


if __name__ == "__main__":
    main()
