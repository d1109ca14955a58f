#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) so the `wgpu` backend runs on a machine without a GPU.
# Debian/Ubuntu only; does nothing when the packages are already there.
set -euo pipefail
pkgs=(mesa-vulkan-drivers libvulkan1)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "vulkan: ${pkgs[*]} already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
