"""Pythonic graph API over the patched ggml, in numpy shape order.

A :class:`Context` owns a device and the tensors built on it. Leaf tensors
(parameters, inputs, constants, optimizer state) keep their memory across graph
computes; op results get memory from the :class:`Graph` that computes them, so an
op result belongs to one graph: build the expression again for a second graph.

Shapes are numpy shapes throughout; ``pyggml_train.shape`` is the only place that
converts them to ggml's reversed ``ne``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ._load import load_extension
from .shape import to_ggml_axes, to_ne

_C = load_extension()

_DTYPES = {
    "f32": (_C.Type.f32, np.float32),
    "f16": (_C.Type.f16, np.float16),
    "bf16": (_C.Type.bf16, np.float32),  # cast() in graphs, or a leaf set from f32; reads as f32
    "q8_0": (_C.Type.q8_0, np.float32),  # a leaf set from f32 (quantized), read back dequantized
    "i32": (_C.Type.i32, np.int32),
}
_NAMES = {v[0]: k for k, v in _DTYPES.items()}
_ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "i32": 4}


def devices() -> list[str]:
    """ggml devices compiled into this build (e.g. ``['CPU']``)."""
    return list(_C.devices())


def default_threads() -> int:
    """Threads to use when the caller does not say: every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


class Tensor:
    """A ggml tensor with its numpy shape."""

    __slots__ = ("_h", "shape")

    def __init__(self, handle: _C.Tensor, shape: tuple[int, ...]):
        if tuple(to_ne(shape)) != tuple(handle.ne):
            raise AssertionError(f"shape {shape} does not match ggml ne {list(handle.ne)}")
        self._h = handle
        self.shape = tuple(shape)

    # -- description ---------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> str:
        return _NAMES[self._h.type]

    @property
    def name(self) -> str:
        return self._h.name

    @name.setter
    def name(self, value: str) -> None:
        self._h.name = value

    @property
    def op(self) -> str:
        return self._h.op

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self.dtype]

    @property
    def strides(self) -> tuple[int, ...]:
        """Byte strides in numpy order, as numpy's (:func:`view` takes element strides)."""
        nb = list(self._h.nb)
        return tuple(int(s) for s in reversed(nb[: self.ndim]))

    @property
    def is_contiguous(self) -> bool:
        return self._h.is_contiguous

    @property
    def is_param(self) -> bool:
        return self._h.is_param

    def __repr__(self) -> str:
        label = f" '{self.name}'" if self.name else ""
        return f"Tensor{label}(shape={self.shape}, dtype={self.dtype}, op={self.op})"

    # -- data ----------------------------------------------------------------------
    def set(self, array: np.ndarray | float | Sequence[float]) -> Tensor:
        """Copy ``array`` into the tensor (allocating leaf tensors on first use)."""
        want = _DTYPES[self.dtype][1]
        arr = np.asarray(array)
        if arr.shape != self.shape:
            if arr.size == self.size and arr.ndim == 0:
                arr = np.full(self.shape, arr)
            else:
                raise ValueError(f"shape mismatch for {self!r}: got array of shape {arr.shape}")
        if (
            np.issubdtype(want, np.floating) != np.issubdtype(arr.dtype, np.floating)
            and arr.dtype != np.bool_
        ):
            if not (np.issubdtype(want, np.floating) and np.issubdtype(arr.dtype, np.integer)):
                raise TypeError(
                    f"dtype mismatch for {self!r}: got {arr.dtype}; an {self.dtype} tensor takes "
                    f"{'integers' if self.dtype == 'i32' else 'numbers'}"
                )
        if want == np.int32 and arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
            raise ValueError(f"values out of int32 range for {self!r}")
        self._h.set(np.ascontiguousarray(arr, dtype=want))
        return self

    def numpy(self) -> np.ndarray:
        """A copy of the tensor's data as a numpy array."""
        return self._h.get().reshape(self.shape)

    def host_view(self) -> np.ndarray:
        """The tensor's memory as a writable numpy array, no copy (host buffers only): a
        write through it changes the tensor. MPI sums gradient accumulators in place so."""
        return self._h.host_view().reshape(self.shape)

    def fill(self, value: float) -> Tensor:
        self._h.fill(float(value))
        return self

    # -- flags -----------------------------------------------------------------------
    def set_loss(self) -> Tensor:
        """Mark this scalar as the loss that backward differentiates."""
        self._h.set_loss()
        return self

    def set_output(self) -> Tensor:
        """Keep this op result readable after compute (graph outputs are marked already)."""
        self._h.set_output()
        return self

    def set_input(self) -> Tensor:
        """Mark a leaf as written by the caller before each compute (``Context.input`` does)."""
        self._h.set_input()
        return self

    # -- operators ---------------------------------------------------------------------
    def __add__(self, other: Tensor) -> Tensor:
        return add(self, other)

    def __sub__(self, other: Tensor) -> Tensor:
        return sub(self, other)

    def __mul__(self, other: Tensor | float) -> Tensor:
        return scale(self, other) if isinstance(other, (int, float)) else mul(self, other)

    def __rmul__(self, other: float) -> Tensor:
        return scale(self, other)

    def __truediv__(self, other: Tensor | float) -> Tensor:
        return scale(self, 1.0 / other) if isinstance(other, (int, float)) else div(self, other)

    def __neg__(self) -> Tensor:
        return neg(self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return transpose(self)


class Context:
    """A device, its thread count, and the tensors built on it."""

    def __init__(self, device: str = "cpu", threads: int | None = None):
        self._c = _C.Context(device, default_threads() if threads is None else threads)

    @property
    def device(self) -> str:
        return self._c.device

    @property
    def threads(self) -> int:
        return self._c.threads

    @threads.setter
    def threads(self, n: int) -> None:
        self._c.threads = n

    @property
    def persistent_bytes(self) -> int:
        """Bytes of device memory held by leaf tensors (parameters, inputs, state)."""
        return self._c.persistent_bytes

    def tensor(self, shape: Sequence[int], dtype: str = "f32", name: str = "") -> Tensor:
        """A leaf tensor whose data persists across computes (inputs, optimizer state). A
        'bf16' or 'q8_0' leaf (a frozen weight) is set from float32 and reads back as
        float32; q8_0 rows come in blocks of 32 values, so its last axis is a multiple of 32."""
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        shape = tuple(int(d) for d in shape)
        return Tensor(self._c.new_tensor(_DTYPES[dtype][0], to_ne(shape), name), shape)

    def input(self, shape: Sequence[int], dtype: str = "f32", name: str = "") -> Tensor:
        t = self.tensor(shape, dtype, name)
        t._h.set_input()
        return t

    def param(self, shape: Sequence[int], name: str = "", init: np.ndarray | None = None) -> Tensor:
        """A trainable f32 leaf; gradients are computed for it by backward graphs."""
        t = self.tensor(shape, "f32", name)
        t._h.set_param()
        if init is not None:
            t.set(init)
        return t

    def constant(self, array: np.ndarray, name: str = "") -> Tensor:
        arr = np.asarray(array)
        dtype = "i32" if np.issubdtype(arr.dtype, np.integer) else "f32"
        return self.tensor(arr.shape, dtype, name).set(arr)

    def allocate(self) -> None:
        """Give memory to every leaf tensor that has none yet."""
        self._c.allocate()

    def graph(
        self,
        outputs: Tensor | Sequence[Tensor],
        backward: bool = False,
        size: int = 0,
        grad_accs: dict[Tensor, Tensor] | None = None,
        arena: Arena | None = None,
    ) -> Graph:
        return Graph(outputs, backward=backward, size=size, grad_accs=grad_accs, arena=arena)


class Arena:
    """Compute buffers shared by graphs that never run at the same time: they hold the
    largest graph's working memory once instead of each graph its own. Computing one
    graph of an arena invalidates the op results of the others (leaf tensors, such as
    gradient accumulators, are unaffected)."""

    def __init__(self) -> None:
        self._a = _C.Arena()


class Graph:
    """A compute graph: forward, optionally backward, and any ops appended later.

    With ``backward=True`` the outputs must include a scalar flagged with
    :meth:`Tensor.set_loss`; every parameter reachable from it gets a persistent
    gradient accumulator. Gradients add up across :meth:`compute` calls until
    :meth:`reset_grads`.
    """

    def __init__(
        self,
        outputs: Tensor | Sequence[Tensor],
        backward: bool = False,
        size: int = 0,
        grad_accs: dict[Tensor, Tensor] | None = None,
        arena: Arena | None = None,
    ):
        """``grad_accs`` maps parameters to accumulators (f32 leaves of their shapes) that
        this graph adds their gradients to instead of accumulators of its own, so several
        graphs can share them; ``arena``: compute buffers to share (see :class:`Arena`)."""
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        pairs = [(p._h, a._h) for p, a in (grad_accs or {}).items()]
        self._g = _C.Graph([o._h for o in outs], backward, size, pairs, arena._a if arena else None)

    def expand(self, tensor: Tensor) -> Tensor:
        """Append ``tensor`` (and what it needs) to the graph, e.g. optimizer steps."""
        self._g.expand(tensor._h)
        return tensor

    def compute(self, threads: int | None = None) -> None:
        """Run the graph (the GIL is released while ggml computes)."""
        self._g.compute(threads or 0)

    def reset_grads(self) -> None:
        """Zero the gradient accumulators; the loss gradient becomes ``loss_scale``."""
        self._g.reset_grads()

    def set_loss_scale(self, scale: float) -> None:
        """Seed of the backward pass (dL/dloss); 1/k averages k accumulated micro-batches."""
        self._g.set_loss_scale(float(scale))

    def grad(self, param: Tensor) -> np.ndarray:
        """The accumulated gradient of ``param`` as numpy."""
        return Tensor(self._g.grad_accumulator(param._h), param.shape).numpy()

    def grad_tensor(self, param: Tensor) -> Tensor:
        """The gradient node of ``param`` in this graph, for ops appended with expand()."""
        return Tensor(self._g.grad(param._h), param.shape)

    def grad_accumulator(self, param: Tensor) -> Tensor:
        """The persistent gradient of ``param``, usable in other graphs."""
        return Tensor(self._g.grad_accumulator(param._h), param.shape)

    @property
    def param_names(self) -> list[str]:
        """Names of the parameters whose gradients this graph's backward adds to."""
        return [p.name for p in self._g.params]

    @property
    def n_nodes(self) -> int:
        return self._g.n_nodes

    @property
    def compute_buffer_bytes(self) -> int:
        """Bytes of the scheduler's compute buffers (0 before the first compute)."""
        return self._g.compute_buffer_bytes

    @property
    def op_names(self) -> list[str]:
        return list(self._g.op_names)

    @property
    def node_backends(self) -> list[str]:
        """The backend each node ran on at the last compute, aligned with :attr:`op_names`
        (empty before the first compute): a node the device cannot run falls back to the CPU."""
        return list(self._g.node_backends)

    def backend_counts(self) -> dict[str, int]:
        """How many nodes ran on each backend at the last compute, e.g. ``{'Vulkan0': 812}``."""
        counts: dict[str, int] = {}
        for name in self.node_backends:
            counts[name] = counts.get(name, 0) + 1
        return counts


# ---- op helpers -------------------------------------------------------------------


def _wrap(handle: _C.Tensor, shape: tuple[int, ...]) -> Tensor:
    return Tensor(handle, shape)


def _broadcast_shape(a: Tensor, b: Tensor, op: str) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None


def _pad_shape(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return (1,) * (ndim - len(shape)) + shape


def _binary(a: Tensor, b: Tensor, op: str) -> Tensor:
    out = _broadcast_shape(a, b, op)
    fn = getattr(_C, op)
    if _pad_shape(a.shape, len(out)) == out:
        return _wrap(fn(a._h, b._h), out)
    if _pad_shape(b.shape, len(out)) == out:
        if op in ("add", "mul"):
            return _wrap(fn(b._h, a._h), out)
        return _wrap(fn(repeat(a, out)._h, b._h), out)
    # both operands broadcast: expand the first to the result shape
    return _binary(repeat(a, out), b, op)


def add(a: Tensor, b: Tensor) -> Tensor:
    return _binary(a, b, "add")


def sub(a: Tensor, b: Tensor) -> Tensor:
    return _binary(a, b, "sub")


def mul(a: Tensor, b: Tensor) -> Tensor:
    return _binary(a, b, "mul")


def div(a: Tensor, b: Tensor) -> Tensor:
    return _binary(a, b, "div")


def repeat(a: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast ``a`` to ``shape`` (materialized)."""
    shape = tuple(shape)
    if tuple(np.broadcast_shapes(a.shape, shape)) != shape:
        raise ValueError(f"repeat: cannot broadcast {a.shape} to {shape}")
    return _wrap(_C.repeat(a._h, to_ne(shape)), shape)


def scale(a: Tensor, s: float) -> Tensor:
    return _wrap(_C.scale(a._h, float(s)), a.shape)


def clamp(a: Tensor, lo: float, hi: float) -> Tensor:
    return _wrap(_C.clamp(a._h, float(lo), float(hi)), a.shape)


def mul_mat(a: Tensor, b: Tensor) -> Tensor:
    """ggml's matmul: ``a (..., N, K)``, ``b (..., M, K)`` -> ``b @ a^T`` of shape ``(..., M, N)``.

    Batch dims of ``a`` broadcast over ``b``'s when they divide them.
    """
    if a.ndim < 2 and b.ndim < 1:
        raise ValueError("mul_mat needs operands with at least 1 dimension")
    nd = max(a.ndim, b.ndim, 2)
    pa, pb = _pad_shape(a.shape, nd), _pad_shape(b.shape, nd)
    out = tuple(pb[:-2]) + (pb[-2], pa[-2])
    return _wrap(_C.mul_mat(a._h, b._h), out)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``, ``weight (N, K)`` as in torch.nn.Linear: x (..., K) -> (..., N)."""
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: x {x.shape} and weight {weight.shape} do not fit (weight is (out, in))"
        )
    flat = reshape(x, (-1, x.shape[-1])) if x.ndim != 2 else x
    y = mul_mat(weight, flat)  # (rows, N)
    if bias is not None:
        y = add(y, bias)
    return reshape(y, x.shape[:-1] + (weight.shape[0],)) if x.ndim != 2 else y


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """numpy's ``a @ b`` for ``a (..., M, K)``, ``b (..., K, N)`` (copies ``b`` transposed)."""
    return mul_mat(cont(transpose(b)), a)


def out_prod(a: Tensor, b: Tensor, allow_bf16: bool = False) -> Tensor:
    """``a (..., K, M)``, ``b (..., K, P)`` -> ``b^T @ a`` of shape ``(..., P, M)``.
    ``allow_bf16``: the backend may round both operands to bf16 (sums stay f32) where its
    bf16 product is faster, as the backward of a bf16 matmul does (AMX tiles, patch 0021)."""
    nd = max(a.ndim, b.ndim, 2)
    pa, pb = _pad_shape(a.shape, nd), _pad_shape(b.shape, nd)
    out = tuple(pb[:-2]) + (pb[-1], pa[-1])
    return _wrap(_C.out_prod(a._h, b._h, allow_bf16), out)


def transpose(a: Tensor) -> Tensor:
    """Swap the last two axes (a view)."""
    shape = _pad_shape(a.shape, 2)
    return _wrap(_C.transpose(a._h), shape[:-2] + (shape[-1], shape[-2]))


def permute(a: Tensor, axes: Sequence[int]) -> Tensor:
    """numpy's ``transpose(a, axes)`` (a view)."""
    axes = tuple(int(x) for x in axes)
    if len(axes) != a.ndim:
        raise ValueError(f"permute: {len(axes)} axes for a {a.ndim}-D tensor {a.shape}")
    return _wrap(_C.permute(a._h, to_ggml_axes(axes)), tuple(a.shape[i] for i in axes))


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    shape = list(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ValueError("reshape: at most one dimension may be -1")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or a.size % known:
            raise ValueError(f"reshape: cannot reshape {a.shape} to {tuple(shape)}")
        shape[shape.index(-1)] = a.size // known
    return _wrap(_C.reshape(a._h, to_ne(tuple(shape))), tuple(shape))


def view(
    a: Tensor, shape: Sequence[int], offset: int = 0, strides: Sequence[int] | None = None
) -> Tensor:
    """A view of ``a`` with numpy ``shape``, starting ``offset`` ELEMENTS into ``a``, with
    ``strides`` in elements (default: those of ``a``'s trailing axes), e.g. the head ``i`` of
    a (T, 3C) projection is ``view(qkv, (T, hs), offset=i * C, strides=(3 * C, 1))``.
    The last axis must be dense (stride 1); bytes are this function's business only."""
    shape = tuple(int(d) for d in shape)
    item = a.itemsize
    if strides is None:
        if len(shape) > a.ndim:
            raise ValueError("view: give strides when the view has more dimensions than the tensor")
        strides = tuple(s // item for s in a.strides[a.ndim - len(shape) :])
    strides = tuple(int(s) for s in strides)
    if len(strides) != len(shape):
        raise ValueError(f"view: {len(strides)} strides for shape {shape}")
    if shape and strides[-1] != 1:
        raise ValueError(f"view: the last axis must be dense (element stride 1), got {strides[-1]}")
    nb = [s * item for s in reversed(strides[:-1])] if shape else []
    nb123 = [0, 0, 0]
    ne = to_ne(shape)
    for i in range(3):
        nb123[i] = nb[i] if i < len(nb) else (nb123[i - 1] * ne[i] if i else item * ne[0])
    return _wrap(_C.view(a._h, ne, nb123, int(offset) * item), shape)


def cast(a: Tensor, dtype: str) -> Tensor:
    """``a`` (f32) converted to ``dtype`` ('f32', 'f16' or 'bf16'); differentiable, the
    gradient reaches ``a`` in f32. Mixed precision casts weights to bf16 for the matmuls."""
    if dtype not in ("f32", "f16", "bf16"):
        raise ValueError(f"cast: dtype must be 'f32', 'f16' or 'bf16', got {dtype!r}")
    return _wrap(_C.cast(a._h, _DTYPES[dtype][0]), a.shape)


def cont(a: Tensor) -> Tensor:
    """A contiguous copy."""
    return _wrap(_C.cont(a._h), a.shape)


def get_rows(table: Tensor, indices: Tensor) -> Tensor:
    """``table[indices]`` for a 2-D ``table (R, W)`` and i32 ``indices`` of 1 or 2 dims."""
    if table.ndim != 2:
        raise ValueError(f"get_rows: table must be 2-D (rows, width), got {table.shape}")
    if indices.ndim not in (1, 2):
        raise ValueError(f"get_rows: indices must be 1-D or 2-D, got {indices.shape}")
    if indices.ndim == 2:
        # ggml gathers one table per index row; flatten and restore instead.
        flat = reshape(indices, (indices.size,))
        rows = _wrap(_C.get_rows(table._h, flat._h), (indices.size, table.shape[1]))
        return reshape(rows, indices.shape + (table.shape[1],))
    return _wrap(_C.get_rows(table._h, indices._h), indices.shape + (table.shape[1],))


def norm(a: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last axis, without affine."""
    return _wrap(_C.norm(a._h, float(eps)), a.shape)


def rms_norm(a: Tensor, eps: float = 1e-6) -> Tensor:
    return _wrap(_C.rms_norm(a._h, float(eps)), a.shape)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Affine LayerNorm over the last axis."""
    return add(mul(norm(x, eps), weight), bias)


def _unary(name: str):
    fn = getattr(_C, name)

    def op(a: Tensor) -> Tensor:
        return _wrap(fn(a._h), a.shape)

    op.__name__ = name
    op.__doc__ = f"Elementwise {name}."
    return op


gelu = _unary("gelu")
gelu_erf = _unary("gelu_erf")
silu = _unary("silu")
relu = _unary("relu")
tanh = _unary("tanh")
exp = _unary("exp")
log = _unary("log")
sqr = _unary("sqr")
sqrt = _unary("sqrt")
neg = _unary("neg")


def sum(a: Tensor) -> Tensor:  # noqa: A001 - mirrors numpy
    """Sum of all elements, a scalar of shape ()."""
    return _wrap(_C.sum(a._h), ())


def sum_rows(a: Tensor) -> Tensor:
    """Sum over the last axis, kept as size 1."""
    return _wrap(_C.sum_rows(a._h), a.shape[:-1] + (1,))


def mean(a: Tensor) -> Tensor:
    """Mean over the last axis, kept as size 1."""
    return _wrap(_C.mean(a._h), a.shape[:-1] + (1,))


def soft_max(a: Tensor, mask: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """softmax(a * scale + mask) over the last axis; ``mask`` broadcasts over leading axes."""
    return _wrap(_C.soft_max(a._h, mask._h if mask is not None else None, float(scale)), a.shape)


def attn_causal(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Causal self-attention ``softmax(scale * q @ k^T + causal mask) @ v`` over the last
    two axes: q (..., H, T, head_size), k and v (..., H_kv, T, head_size) with H a multiple
    of H_kv, query head h reading K/V head h // (H // H_kv) (grouped-query attention, no
    copy of K/V; multi-head when equal); e.g. (B, H, T, hs) views of a fused QKV
    projection. One op (patch 0016): its backward recomputes the probabilities, so no
    (..., T, T) tensor is kept between forward and backward."""
    grouped = (
        k.ndim == q.ndim >= 2
        and k.shape[:-3] + k.shape[-2:] == q.shape[:-3] + q.shape[-2:]
        and (q.ndim == 2 or q.shape[-3] % k.shape[-3] == 0)
    )
    if k.shape != v.shape or not grouped:
        raise ValueError(
            f"attn_causal: q (..., H, T, head_size) and k, v of one shape (..., H_kv, T, "
            f"head_size) with H_kv dividing H, got {q.shape}, {k.shape}, {v.shape}"
        )
    return _wrap(_C.attn_causal(q._h, k._h, v._h, float(scale)), q.shape)


ROPE_MODES = {"llama": 0, "neox": 2}  # which elements of a head form a rotated pair


def rope(
    x: Tensor, positions: Tensor, mode: str, theta: float, n_dims: int | None = None
) -> Tensor:
    """Rotary position embedding of x (B, T, nh, hs) at the i32 ``positions`` (T,).

    Pair i of a head turns by the angle ``position * theta**(-2i / n_dims)``; ``mode``
    'llama' pairs adjacent elements (2i, 2i+1) (llama.cpp's layout of llama weights),
    'neox' the halves (i, i + n_dims/2) (Hugging Face's rotate_half, Qwen2). The first
    ``n_dims`` (default: all hs) elements rotate, the rest pass through. Upstream ggml's
    ROPE op and its backward.
    """
    if mode not in ROPE_MODES:
        raise ValueError(f"rope: mode must be one of {sorted(ROPE_MODES)}, got {mode!r}")
    if x.ndim != 4 or positions.shape != (x.shape[1],):
        raise ValueError(
            f"rope: x must be (B, T, nh, hs) and positions (T,), got {x.shape} and "
            f"{positions.shape}"
        )
    n_dims = x.shape[-1] if n_dims is None else n_dims
    return _wrap(_C.rope(x._h, positions._h, n_dims, ROPE_MODES[mode], float(theta)), x.shape)


def dropout(x: Tensor, state: Tensor, p: float, stream: int = 0) -> Tensor:
    """Inverted dropout: ``x * keep / (1 - p)`` with ``keep`` 0 for about a fraction ``p``
    of the elements (patch 0018). ``state`` is an i32 (2,) input holding (seed, counter),
    read when the graph runs: write a new counter to draw a new mask from the same graph.
    ``stream`` tells apart dropouts sharing a state. The mask is a hash of (seed, counter,
    stream, element index), never stored; the backward regenerates it (docs/ops/dropout.md).
    """
    if state.shape != (2,) or state.dtype != "i32":
        raise ValueError(
            f"dropout: state must be an i32 tensor of shape (2,) (seed, counter), got "
            f"{state.dtype} {state.shape}"
        )
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not -(2**31) <= stream < 2**31:
        raise ValueError(f"dropout: stream must fit an int32, got {stream}")
    return _wrap(_C.dropout(x._h, state._h, float(p), int(stream)), x.shape)


def diag_mask_inf(a: Tensor, n_past: int = 0) -> Tensor:
    """Set entries above the diagonal (column > row + n_past) to -inf: the causal mask."""
    return _wrap(_C.diag_mask_inf(a._h, int(n_past)), a.shape)


def cross_entropy_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over rows of ``-sum(labels * log_softmax(logits))``; dense label probabilities."""
    return _wrap(_C.cross_entropy_loss(logits._h, labels._h), ())


def cross_entropy_loss_sparse(
    logits: Tensor, targets: Tensor, n_classes: int | None = None
) -> Tensor:
    """Mean over rows of ``-log_softmax(logits)[target]`` with i32 ``targets`` of shape
    ``logits.shape[:-1]``; rows with a negative target are ignored. Needs no dense labels.
    With ``n_classes``, only the first ``n_classes`` entries of each row are classes: the
    rest (a padded vocabulary) stay out of the softmax and get zero gradient, so padded
    logits need no cut-off copy."""
    if logits.ndim < 1:
        raise ValueError("cross_entropy_loss_sparse: logits need a class axis, got a scalar")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy_loss_sparse: targets {targets.shape} must have shape "
            f"{logits.shape[:-1]}"
        )
    classes = logits.shape[-1] if n_classes is None else n_classes
    return _wrap(_C.cross_entropy_loss_sparse(logits._h, targets._h, classes), ())


def norm_back(grad: Tensor, x: Tensor, eps: float = 1e-5) -> Tensor:
    """dL/dx of ``norm(x, eps)`` given ``grad = dL/dnorm(x)``."""
    return _wrap(_C.norm_back(grad._h, x._h, float(eps)), x.shape)


def gelu_back(grad: Tensor, x: Tensor) -> Tensor:
    """dL/dx of ``gelu(x)`` (tanh approximation) given ``grad = dL/dgelu(x)``."""
    return _wrap(_C.gelu_back(grad._h, x._h), x.shape)


def gelu_erf_back(grad: Tensor, x: Tensor) -> Tensor:
    """dL/dx of ``gelu_erf(x)`` given ``grad``."""
    return _wrap(_C.gelu_erf_back(grad._h, x._h), x.shape)


def set_rows(dst: Tensor, rows: Tensor, indices: Tensor) -> Tensor:
    """``dst[..., indices, :] = rows`` in place (returns a view of ``dst`` to compute);
    ``rows (..., n, W)``, i32 ``indices (n,)``. Used to write a KV cache."""
    return _wrap(_C.set_rows(dst._h, rows._h, indices._h), dst.shape)


def cpy(src: Tensor, dst: Tensor) -> Tensor:
    """Copy ``src`` into ``dst`` (same number of elements), returning a view of ``dst``."""
    return _wrap(_C.cpy(src._h, dst._h), dst.shape)


def opt_step_adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hparams: Tensor) -> Tensor:
    """In-place AdamW step of ``param``. ``hparams`` (7,) f32 holds
    ``[lr, beta1, beta2, eps, weight_decay, 1/(1-beta1^t), 1/(1-beta2^t)]``; an (8,) tensor
    adds a factor the step multiplies ``grad`` by (global-norm clipping without a copy)."""
    return _wrap(_C.opt_step_adamw(param._h, grad._h, m._h, v._h, hparams._h), param.shape)


def opt_step_sgd(param: Tensor, grad: Tensor, hparams: Tensor) -> Tensor:
    """In-place SGD step; ``hparams`` (2,) f32 holds ``[lr, weight_decay]``."""
    return _wrap(_C.opt_step_sgd(param._h, grad._h, hparams._h), param.shape)


def cpu_blas() -> str:
    """The BLAS library (and the kernels it chose for this CPU) that runs the CPU's large f32
    matmuls, or ``''`` for a build on ggml's own sgemm (``-DPYGGML_CPU_BLAS=OFF``)."""
    return _C.cpu_blas()


def ggml_version() -> tuple[str, list[str]]:
    """(pinned upstream ggml commit, names of the patches applied to it)."""
    return _C.GGML_COMMIT, list(_C.GGML_PATCHES)
