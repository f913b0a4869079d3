#!/usr/bin/env bash
# Debian packages of a Vulkan build and of its tests on the CPU: the loader and headers,
# glslc (ggml-vulkan's shaders and ours are GLSL), SPIR-V headers, and Mesa's drivers,
# whose lavapipe is a conformant Vulkan 1.3 device running on the CPU (a correctness
# device: every op runs as on a GPU, only slowly). vulkaninfo comes with vulkan-tools.
# Idempotent: installs only what is missing.
set -euo pipefail
packages=(mesa-vulkan-drivers libvulkan-dev glslc spirv-headers vulkan-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
