#!/usr/bin/env bash
# Installs the peer gateways for side-by-side runs, each in its own virtualenv under bench/.venvs/,
# never as a dependency of modelgate. Usage: bench/setup.sh [litellm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$here/.venvs"
mkdir -p "$venvs"
peers=("${@:-litellm}")

for peer in "${peers[@]}"; do
  case "$peer" in
    litellm)
      python3 -m venv "$venvs/litellm"
      "$venvs/litellm/bin/pip" install --quiet --upgrade pip
      # [proxy] brings the FastAPI/uvicorn server; the cost map is read locally (no network) at run time
      # through LITELLM_LOCAL_MODEL_COST_MAP=True, which bench/systems.py sets.
      "$venvs/litellm/bin/pip" install --quiet 'litellm[proxy]'
      "$venvs/litellm/bin/litellm" --version || true
      ;;
    *) echo "unknown peer: $peer (only litellm is wired into bench/run.py so far)" >&2; exit 2 ;;
  esac
done
