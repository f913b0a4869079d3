"""Which kernel runs our CPU matrix products, chosen from the CPU's features at run time.

Two things decide it. OpenBLAS (f32 products, patch 0011) picks its sgemm kernel for the
CPU it runs on. ggml's bf16 products, and the backward products of a bf16 matmul, run on
our packed bf16 GEMM (patch 0021): on AMX tiles where the CPU has AMX-BF16
(compiled into every x86-64 Linux build, taken at run time), else on AVX512-BF16
registers (``vdpbf16ps``) where the build targets them. Products the GEMM does not take
(a side under 32, batched weights) and CPUs without either engine use llamafile's
tinyBLAS, compiled for the SIMD the build targeted. :func:`select_kernels` is the rule, a
pure function of the CPU's features, the build's and OpenBLAS's kernel name, so it is
tested for AMX, AVX512-BF16 and AVX2-only CPUs on any machine. :func:`matmul_stats` reads
what actually ran (patch 0019), which the benchmark records for every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .ggml import _C

# bf16 product kernels, fastest first. The packed GEMM runs on AMX tiles where the CPU has
# AMX-BF16, Linux grants the tile state and PYGGML_AMX is not "0" (every x86-64 Linux build
# with GCC >= 11 or Clang >= 12 has it: "amx_bf16" among the compiled features), else on
# AVX512-BF16 registers in builds that target them; PYGGML_BF16_GEMM=0 switches it off.
BF16_AMX = "amx_bf16 tiles"
BF16_PACKED_AVX512 = "packed GEMM, avx512_bf16 (vdpbf16ps)"
BF16_AVX512BF16 = "tinyBLAS avx512_bf16 (vdpbf16ps)"
BF16_AVX512F = "tinyBLAS avx512f (bf16 widened to f32)"
BF16_AVX2 = "tinyBLAS avx2 (bf16 widened to f32)"
BF16_SCALAR = "ggml vec_dot (bf16 widened to f32)"
NATIVE_BF16 = (BF16_AMX, BF16_PACKED_AVX512, BF16_AVX512BF16)

# Compiled features whose kernels check the CPU at run time before they run, so a build
# may contain them for a CPU that lacks them.
RUNTIME_DISPATCHED = frozenset({"amx_bf16"})


@dataclass(frozen=True)
class KernelChoice:
    """The kernels of one CPU and build: ``f32`` and ``bf16`` name the product kernels
    (``bf16`` the one weight-sized products take), ``bf16_small`` the one for bf16 products
    the packed GEMM does not take (a side under 32), ``matmul_dtype`` the faster of f32 and
    bf16 for weight matmuls (bf16 only where the CPU multiplies bf16 natively; elsewhere
    widening it costs more than it saves), ``notes`` why a faster kernel was not taken."""

    f32: str
    bf16: str
    bf16_small: str
    matmul_dtype: str
    notes: tuple[str, ...] = ()


def select_kernels(
    cpu: frozenset[str] | set[str],
    compiled: frozenset[str] | set[str],
    blas_core: str = "",
    amx_on: bool = True,
    gemm_on: bool = True,
) -> KernelChoice:
    """The product kernels for a CPU with feature flags ``cpu`` (as /proc/cpuinfo names
    them), a build compiled for ``compiled`` and OpenBLAS kernels ``blas_core`` ('' without
    OpenBLAS); ``amx_on`` False when the process may not use the tiles (PYGGML_AMX=0, or
    Linux refused the tile state), ``gemm_on`` False when the packed bf16 GEMM is switched
    off (PYGGML_BF16_GEMM=0). Raises RuntimeError if the build needs a feature the CPU
    lacks (features in RUNTIME_DISPATCHED are not needed: their kernels check first)."""
    missing = sorted(set(compiled) - set(cpu) - RUNTIME_DISPATCHED)
    if missing:
        raise RuntimeError(
            f"pyggml_train's ggml was compiled for CPU features this CPU lacks: {missing}; "
            "it would stop on an illegal instruction. Fix: build it on this machine "
            "(pip install --no-binary pyggml-train ., or scripts/dev_build.sh)"
        )
    f32 = f"OpenBLAS sgemm ({blas_core})" if blas_core else "tinyBLAS f32 (ggml's own sgemm)"
    notes = []
    if "avx512_bf16" in compiled:
        small = BF16_AVX512BF16
    elif "avx512f" in compiled:
        small = BF16_AVX512F
    elif "avx2" in compiled:
        small = BF16_AVX2
    else:
        small = BF16_SCALAR
    amx = "amx_bf16" in cpu and "amx_bf16" in compiled and amx_on
    if gemm_on and amx:
        bf16 = BF16_AMX
    elif gemm_on and "avx512_bf16" in compiled:
        bf16 = BF16_PACKED_AVX512
    else:
        bf16 = small
        if not gemm_on and (amx or "avx512_bf16" in compiled):
            notes.append(
                "the packed bf16 GEMM is switched off in this process (PYGGML_BF16_GEMM=0)"
            )
    if bf16 != BF16_AMX and "amx_bf16" in cpu:
        if "amx_bf16" not in compiled:
            notes.append("the CPU has AMX-BF16 tiles, but this build has no AMX bf16 GEMM")
        elif not amx_on:
            notes.append(
                "the CPU has AMX-BF16 tiles and this build the AMX GEMM, but it is off in this"
                " process (PYGGML_AMX=0, or Linux refused the tile state)"
            )
    if bf16 not in NATIVE_BF16 and {"avx512_bf16", "amx_bf16"} & set(cpu):
        notes.append("the CPU multiplies bf16 natively, but this build was compiled without it")
    return KernelChoice(f32, bf16, small, "bf16" if bf16 in NATIVE_BF16 else "f32", tuple(notes))


def cpu_features(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first processor in ``cpuinfo`` (default: /proc/cpuinfo;
    empty where there is none, e.g. not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def compiled_features() -> frozenset[str]:
    """The x86 features this build's CPU backend was compiled for."""
    return frozenset(_C.cpu_compiled_features())


def blas_core() -> str:
    """OpenBLAS's kernel name for this CPU ('' when the build has no OpenBLAS)."""
    blas = _C.cpu_blas()
    return blas.rsplit("(kernels: ", 1)[1].rstrip(")") if "(kernels: " in blas else ""


def amx_usable() -> bool:
    """Whether this process runs bf16 products on AMX tiles (patch 0021): compiled in, the
    CPU has AMX-BF16, Linux granted the tile state and PYGGML_AMX is not "0"."""
    return bool(_C.cpu_amx_bf16_usable())


def bf16_gemm_engine() -> str:
    """What runs the packed bf16 GEMM in this process: "amx_bf16" (tiles), "avx512_bf16"
    (registers) or "" (neither: PYGGML_BF16_GEMM=0, or neither in this build and CPU)."""
    return str(_C.cpu_bf16_gemm_engine())


def amx_emulated() -> bool:
    """Whether this build's AMX tiles are the C emulation (a test build,
    ``-DPYGGML_AMX_EMULATE=ON``: every bf16 product that fits runs on them, slowly)."""
    return bool(_C.cpu_amx_bf16_emulated())


def this_cpu() -> KernelChoice:
    """:func:`select_kernels` for the CPU this process runs on (where its features cannot
    be read, e.g. not Linux, it is taken to have those the build was compiled for). AMX
    tiles are taken where the kernel found them usable: it checked CPUID itself (or, in an
    emulated build, has no need to)."""
    compiled, amx = compiled_features(), amx_usable()
    cpu = set(cpu_features() or (compiled - RUNTIME_DISPATCHED))
    if amx:
        cpu.add("amx_bf16")
    return select_kernels(cpu, compiled, blas_core(), amx, bf16_gemm_engine() != "")


def matmul_stats() -> list[dict]:
    """What ran the CPU's MUL_MAT / OUT_PROD products since :func:`reset_matmul_stats`: one
    dict per (op, kernel, src0 type) with its product count and multiply-adds."""
    return [
        {"op": op, "kernel": kernel, "type": dtype, "products": n, "macs": macs}
        for op, kernel, dtype, n, macs in _C.cpu_matmul_stats()
    ]


def reset_matmul_stats() -> None:
    _C.cpu_matmul_stats_reset()


def kernel_name(kernel: str, dtype: str, choice: KernelChoice) -> str:
    """A readable name for a ``matmul_stats`` kernel on the CPU and build of ``choice``."""
    if kernel == "cblas_sgemm":
        return choice.f32
    if kernel == "tinyblas":
        return choice.bf16_small if dtype == "bf16" else f"tinyBLAS {dtype}"
    if kernel == "amx_bf16":
        return BF16_AMX
    if kernel == "avx512_bf16":
        return BF16_PACKED_AVX512
    if kernel == "vec_dot":
        return f"ggml vec_dot loop ({dtype})"
    return f"ggml out_prod loop ({dtype})"


def kernel_summary(stats: list[dict], choice: KernelChoice) -> list[str]:
    """One line per op and src0 type: which kernels ran it and their share of its
    multiply-adds, e.g. 'mul_mat bf16: tinyBLAS avx512_bf16 (vdpbf16ps) 100%'."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for s in stats:
        names = groups.setdefault((s["op"], s["type"]), {})
        name = kernel_name(s["kernel"], s["type"], choice)
        names[name] = names.get(name, 0) + s["macs"]
    lines = []
    for (op, dtype), names in sorted(groups.items()):
        total = sum(names.values()) or 1
        shares = ", ".join(f"{n} {100 * m / total:.0f}%" for n, m in names.items())
        lines.append(f"{op} {dtype}: {shares}")
    return lines
