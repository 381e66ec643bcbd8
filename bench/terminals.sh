#!/usr/bin/env bash
# Terminal benchmark (not a test): workspaced vs terminado vs a local PTY.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import terminado, tornado, websockets' 2>/dev/null || pip install -q terminado tornado websockets
cargo build --release -p workspaced
python3 bench/terminals.py
