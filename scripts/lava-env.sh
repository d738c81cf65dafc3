#!/usr/bin/env bash
# Create the Python 3.10 interpreter that runs Lava (lava-nc 0.10.0 needs Python 3.10 and numpy<2).
#
#   bash scripts/lava-env.sh [DIR]        DIR defaults to .venv-lava
#
# Idempotent: an existing DIR whose interpreter already imports the pinned versions is left as it
# is; a broken or partial DIR is rebuilt. Python 3.10 is looked for, in order, at:
#   $SLAMP_PYTHON310, $(pyenv root)/versions/3.10.*/bin/python3.10, ~/.pyenv/versions/3.10.*,
#   /usr/local/bin/python3.10, /usr/bin/python3.10, then python3.10 on PATH.
# Each candidate is only accepted if it actually runs and reports 3.10 (pyenv's bare python3.10
# shim exists on PATH but refuses to run unless that version is selected).
set -euo pipefail

DIR="${1:-.venv-lava}"

# Pins (resolved and tested together on Python 3.10.13): lava-nc 0.10.0, nir 1.0.8, numpy<2 and
# every transitive dependency at the exact version pip picked, so a rebuild gets the same set.
PINS=(
  "lava-nc==0.10.0"
  "nir==1.0.8"
  "numpy==1.26.4"
  "scipy==1.15.3"
  "h5py==3.16.0"
  "networkx==2.8.7"
  "asteval==0.9.33"
  "scikit-learn==1.7.2"
  "joblib==1.6.0"
  "threadpoolctl==3.8.0"
  "cloudpickle==3.1.3"
)

log() { printf 'lava-env: %s\n' "$*" >&2; }

is_py310() {
  # Runs the candidate; accepts it only if it executes and is CPython 3.10.
  [ -n "$1" ] && [ -x "$1" ] || return 1
  "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' \
    >/dev/null 2>&1
}

find_python310() {
  local c roots=()
  if [ -n "${SLAMP_PYTHON310:-}" ]; then
    if is_py310 "$SLAMP_PYTHON310"; then echo "$SLAMP_PYTHON310"; return 0; fi
    log "SLAMP_PYTHON310=$SLAMP_PYTHON310 is not a working Python 3.10; looking elsewhere"
  fi
  if command -v pyenv >/dev/null 2>&1; then
    roots+=("$(pyenv root 2>/dev/null || true)")
  fi
  roots+=("${PYENV_ROOT:-}" "$HOME/.pyenv")
  for r in "${roots[@]}"; do
    [ -n "$r" ] || continue
    # Newest 3.10.x first.
    for c in $(ls -d "$r"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -rV); do
      if is_py310 "$c"; then echo "$c"; return 0; fi
    done
  done
  for c in /usr/local/bin/python3.10 /usr/bin/python3.10 "$(command -v python3.10 || true)"; do
    if is_py310 "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

env_ok() {
  # True when DIR's interpreter imports lava, nir and numpy at the pinned versions.
  [ -x "$DIR/bin/python" ] || return 1
  "$DIR/bin/python" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert sys.version_info[:2] == (3, 10)
assert version("lava-nc") == "0.10.0"
assert version("nir") == "1.0.8"
import numpy
assert numpy.__version__ == "1.26.4"
import lava.magma.core.run_configs  # noqa: F401
import lava.proc.lif.process  # noqa: F401
import nir  # noqa: F401
EOF
}

if env_ok; then
  log "$DIR already has lava-nc 0.10.0, nir 1.0.8, numpy 1.26.4: nothing to do"
  exit 0
fi

if ! PY310="$(find_python310)"; then
  log "error: no working Python 3.10 found. Install it with \`pyenv install 3.10\`" \
      "(or apt-get install python3.10 python3.10-venv), or set SLAMP_PYTHON310=/path/to/python3.10"
  exit 1
fi
log "using $PY310 ($("$PY310" -c 'import sys; print(sys.version.split()[0])'))"

if [ -e "$DIR" ]; then
  log "$DIR exists but is incomplete or has other versions: rebuilding it"
  rm -rf "$DIR"
fi

"$PY310" -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"

if ! env_ok; then
  log "error: $DIR was created but does not import lava-nc 0.10.0 / nir 1.0.8 / numpy 1.26.4;" \
      "see the pip output above, then rerun \`make lava-env\`"
  exit 1
fi
log "ready: $DIR/bin/python"
