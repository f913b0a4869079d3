#!/usr/bin/env bash
# Installs the test components that are not plain PyPI dependencies of the `test` extra
# (each section says what and why). Idempotent, and fast when its caches are warm.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- studio: Debian's chromium for the browser test, npm assets (LiteGraph.js, Chart.js) ----
# Playwright drives /usr/bin/chromium (its own browser download cannot work here). The wheel
# build fetches the studio's JavaScript with npm; where npm was missing then, fetch it now
# into the installed package (run outside the source tree so the installed one is found).
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
(cd / && python -m pyggml_train.studio.assets)

# ---- llama-cpp-python: the GGUF export tests load our files in llama.cpp ----
# PyPI has only its sdist, whose build takes minutes (about 3 on an idle 2-core Zen 4, over
# 15 on a loaded one), so the wheel is built once per pinned version into a cache outside the
# clone and installed from there (about a second). llama.cpp's tests, examples, tools, server
# and llava/mtmd are not built: only libllama and the Python bindings are needed.
llama_cpp_version=0.3.36
wheels="${PYGGML_CACHE_DIR:-$HOME/.cache/pyggml_train}/wheels/llama_cpp_python-$llama_cpp_version"
if ! python -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$llama_cpp_version')" 2>/dev/null; then
  if ! ls "$wheels"/llama_cpp_python-"$llama_cpp_version"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $llama_cpp_version into $wheels (once; a few minutes on 2 idle cores, longer under load)"
    tmp="$wheels.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      pip wheel --no-deps --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$llama_cpp_version"
    rm -rf "$wheels" && mv "$tmp" "$wheels"
  fi
  pip install "$wheels"/llama_cpp_python-"$llama_cpp_version"-*.whl
fi

# ---- llama.cpp's own converters: GGUFs that convert_hf_to_gguf.py and convert_lora_to_gguf.py
# write import into ours ----
# The llama-cpp-python sdist ships llama.cpp's convert_hf_to_gguf.py and convert_lora_to_gguf.py
# with their conversion/ and gguf-py/ packages; they are unpacked once into the cache, where the
# tests look (tests/io/test_llama_gguf.py, test_lora_llama_cpp.py; PYGGML_LLAMA_CPP_CONVERTER
# overrides the place of convert_hf_to_gguf.py, the LoRA converter is looked for beside it).
converter="${PYGGML_CACHE_DIR:-$HOME/.cache/pyggml_train}/llama-cpp-converter-$llama_cpp_version"
if [ ! -f "$converter/convert_hf_to_gguf.py" ] || [ ! -f "$converter/convert_lora_to_gguf.py" ]; then
  tmp=$(mktemp -d)
  pip download -q --no-deps --no-binary llama-cpp-python -d "$tmp" "llama-cpp-python==$llama_cpp_version"
  tar -xzf "$tmp"/llama_cpp_python-"$llama_cpp_version".tar.gz -C "$tmp"
  src="$tmp/llama_cpp_python-$llama_cpp_version/vendor/llama.cpp"
  mkdir -p "$converter.tmp.$$"
  cp -r "$src/convert_hf_to_gguf.py" "$src/convert_lora_to_gguf.py" "$src/conversion" "$src/gguf-py" \
    "$converter.tmp.$$/"
  rm -rf "$converter" && mv "$converter.tmp.$$" "$converter" && rm -rf "$tmp"
fi
