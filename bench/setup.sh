#!/usr/bin/env bash
# Installs the peer gateways for side-by-side runs, each in its own folder under bench/.venvs/,
# never as a dependency of modelgate. Usage: bench/setup.sh [litellm] [tensorzero] [portkey]
# (no argument: all three).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$here/.venvs"
mkdir -p "$venvs"
if [ "$#" -eq 0 ]; then
  peers=(litellm tensorzero portkey)
else
  peers=("$@")
fi

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
    tensorzero)
      # The wheel carries the Rust gateway inside its extension module; bench/tensorzero_serve.py
      # runs it as an HTTP server with this venv's interpreter.
      python3 -m venv "$venvs/tensorzero"
      "$venvs/tensorzero/bin/pip" install --quiet --upgrade pip
      "$venvs/tensorzero/bin/pip" install --quiet tensorzero
      "$venvs/tensorzero/bin/python" -c 'import tensorzero; print("tensorzero", tensorzero.__version__)'
      ;;
    portkey)
      # The Node.js gateway from npm, in a plain folder (npm's --prefix); needs node on PATH.
      command -v npm >/dev/null || { echo "portkey needs node and npm on PATH" >&2; exit 2; }
      mkdir -p "$venvs/portkey"
      npm install --prefix "$venvs/portkey" --no-audit --no-fund --loglevel=error @portkey-ai/gateway
      node -e 'const p = require(process.argv[1]); console.log(p.name, p.version, "on node", process.version)' \
        "$venvs/portkey/node_modules/@portkey-ai/gateway/package.json"
      ;;
    *) echo "unknown peer: $peer (known: litellm, tensorzero, portkey)" >&2; exit 2 ;;
  esac
done
