#!/usr/bin/env bash
# Compile-check the CUDA sources touched by csrc/patches with nvcc, without a GPU.
#
#   scripts/check_cuda_compile.sh PATCHED_GGML_DIR [ARCH]
#
# PATCHED_GGML_DIR is a ggml tree with the patch series applied (for example the copy the
# build makes, or a workspace from scripts/ggml_patch_workspace.sh). ARCH defaults to
# sm_90. Only compiles to object files (nothing is linked or run).
#
# cuBLAS headers: ggml-cuda includes cublas_v2.h, which the CUDA toolkit here does not
# ship. Set CUBLAS_INCLUDE_DIR to a directory holding cublas_v2.h, or let the script
# download the PyPI wheel nvidia-cublas once (about 450 MB) and keep only its include
# directory in a cache (PYGGML_CACHE_DIR, else XDG_CACHE_HOME/pyggml_train, else
# ~/.cache/pyggml_train).
#
# Exit status: 0 if every file compiles, or if nvcc is not installed (reported as
# skipped); 1 if a file fails to compile; 2 on usage or setup errors.

set -euo pipefail

usage() { echo "usage: $0 PATCHED_GGML_DIR [ARCH]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
GGML_DIR=$(cd "$1" && pwd) || usage
ARCH=${2:-sm_90}

if ! command -v nvcc > /dev/null 2>&1; then
    echo "check_cuda_compile: skipped: nvcc not on PATH"
    exit 0
fi
[[ -f "$GGML_DIR/src/ggml-cuda/ggml-cuda.cu" ]] || { echo "check_cuda_compile: $GGML_DIR is not a ggml tree" >&2; exit 2; }

# --- cuBLAS headers ------------------------------------------------------------------
find_cublas_headers() {
    if [[ -n "${CUBLAS_INCLUDE_DIR:-}" ]]; then
        [[ -f "$CUBLAS_INCLUDE_DIR/cublas_v2.h" ]] || { echo "check_cuda_compile: no cublas_v2.h in CUBLAS_INCLUDE_DIR=$CUBLAS_INCLUDE_DIR" >&2; exit 2; }
        echo "$CUBLAS_INCLUDE_DIR"
        return
    fi
    # the toolkit may have them after all
    local nvcc_root; nvcc_root=$(dirname "$(dirname "$(command -v nvcc)")")
    for d in "$nvcc_root/include" /usr/local/cuda/include /usr/include; do
        if [[ -f "$d/cublas_v2.h" ]]; then echo "$d"; return; fi
    done

    local cache=${PYGGML_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyggml_train}/cublas-include
    if [[ -f "$cache/cublas_v2.h" ]]; then echo "$cache"; return; fi

    echo "check_cuda_compile: fetching cuBLAS headers from the nvidia-cublas wheel (~450 MB download, kept: headers only)" >&2
    local tmp; tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    python3 -m pip download --quiet --no-deps --only-binary :all: --disable-pip-version-check \
        nvidia-cublas -d "$tmp" >&2 || { echo "check_cuda_compile: pip download nvidia-cublas failed" >&2; exit 2; }
    # extract only */include/* from the wheel (a zip) into the cache
    python3 - "$tmp" "$cache" <<'EOF' >&2
import glob, os, sys, zipfile
tmp, cache = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "nvidia_cublas*.whl"))[0]
os.makedirs(cache + ".tmp", exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        parts = name.split("/")
        if "include" in parts[:-1] and not name.endswith("/"):
            with z.open(name) as src, open(os.path.join(cache + ".tmp", parts[-1]), "wb") as dst:
                dst.write(src.read())
os.replace(cache + ".tmp", cache)
EOF
    [[ -f "$cache/cublas_v2.h" ]] || { echo "check_cuda_compile: the wheel had no cublas_v2.h" >&2; exit 2; }
    echo "$cache"
}
CUBLAS_INC=$(find_cublas_headers)

# --- files to compile ------------------------------------------------------------------
# Every .cu file of ggml-cuda that csrc/patches changes, our own ones (csrc/ggml-ext/cuda/,
# which the build copies into src/ggml-cuda/), plus the ones the series is known to touch
# (in case the patches are not found next to this script).
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH_DIR=$REPO_ROOT/csrc/patches
FILES=(src/ggml-cuda/ggml-cuda.cu src/ggml-cuda/norm.cu src/ggml-cuda/unary.cu)
if compgen -G "$PATCH_DIR/*.patch" > /dev/null; then
    while read -r f; do
        [[ " ${FILES[*]} " == *" $f "* ]] || FILES+=("$f")
    done < <(grep -h '^+++ b/src/ggml-cuda/.*\.cu$' "$PATCH_DIR"/*.patch | sed 's|^+++ b/||' | sort -u)
fi
for f in "$REPO_ROOT"/csrc/ggml-ext/cuda/*.cu; do
    [[ -e "$f" ]] && FILES+=("src/ggml-cuda/$(basename "$f")")
done

# In a workspace made by scripts/ggml_patch_workspace.sh, also everything changed since the
# upstream tag (commits not exported yet, uncommitted edits).
if git -C "$GGML_DIR" rev-parse -q --verify upstream > /dev/null 2>&1; then
    while read -r f; do
        [[ -n "$f" && " ${FILES[*]} " != *" $f "* ]] && FILES+=("$f")
    done < <(git -C "$GGML_DIR" diff --name-only upstream -- 'src/ggml-cuda/*.cu')
fi

# Flags as ggml's CMake uses them for ggml-cuda (src/ggml-cuda/CMakeLists.txt, defaults).
FLAGS=(-arch="$ARCH" -std=c++17 -O2 -use_fast_math -extended-lambda
       -DGGML_USE_CUDA -DGGML_CUDA_PEER_MAX_BATCH_SIZE=128 -DGGML_CUDA_USE_GRAPHS
       -DGGML_SCHED_MAX_COPIES=4 -DNDEBUG -D_GNU_SOURCE -D_XOPEN_SOURCE=600
       -I"$GGML_DIR/include" -I"$GGML_DIR/src" -I"$GGML_DIR/src/ggml-cuda" -I"$CUBLAS_INC")

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
status=0
total_start=$(date +%s)
for f in "${FILES[@]}"; do
    start=$(date +%s)
    if nvcc "${FLAGS[@]}" -c "$GGML_DIR/$f" -o "$OUT/$(basename "$f").o" > "$OUT/log" 2>&1; then
        echo "ok      $f ($(( $(date +%s) - start )) s)"
    else
        echo "FAILED  $f ($(( $(date +%s) - start )) s)"
        cat "$OUT/log"
        status=1
    fi
done
echo "check_cuda_compile: $([[ $status == 0 ]] && echo PASS || echo FAIL) (${#FILES[@]} files, $ARCH, $(( $(date +%s) - total_start )) s)"
exit $status
