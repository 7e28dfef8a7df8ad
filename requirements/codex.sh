#!/usr/bin/env bash
# Installs Codex CLI (the npm package @openai/codex, a native binary per platform) into .codex-cli,
# at the version below, for the tests that run it against the gateway's Responses API. Does nothing
# when that version is already there. Needs Node.js's npm and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.171.0
if [ "$(.codex-cli/node_modules/.bin/codex --version 2>/dev/null)" = "codex-cli $version" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "requirements/codex.sh: npm is not installed (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
rm -rf .codex-cli
npm install --prefix .codex-cli --no-audit --no-fund --silent "@openai/codex@$version"
