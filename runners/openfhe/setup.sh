#!/usr/bin/env bash
# Create the encrypted-execution runner's virtual environment on CPython 3.10
# (the openfhe 1.6.1 wheel on PyPI only carries a cp310 extension) and install
# requirements.txt into it. Usage: runners/openfhe/setup.sh [VENV_DIR]
# Default VENV_DIR: runners/openfhe/.venv. Honours $PNNC_PYTHON310.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"

is_python310() {
    [ -x "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null
}

find_python310() {
    local candidate
    if [ -n "${PNNC_PYTHON310:-}" ]; then
        if is_python310 "$PNNC_PYTHON310"; then echo "$PNNC_PYTHON310"; return 0; fi
        echo "error: \$PNNC_PYTHON310=$PNNC_PYTHON310 is not a CPython 3.10 interpreter" >&2
        return 1
    fi
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.|$)' | sort -rV); do
            candidate="$(pyenv root)/versions/$version/bin/python3.10"
            if is_python310 "$candidate"; then echo "$candidate"; return 0; fi
        done
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 \
                     /root/.pyenv/versions/3.10*/bin/python3.10; do
        if is_python310 "$candidate"; then echo "$candidate"; return 0; fi
    done
    if command -v python3.10 >/dev/null 2>&1 && is_python310 "$(command -v python3.10)"; then
        command -v python3.10; return 0
    fi
    echo "error: no CPython 3.10 found (the openfhe wheel needs exactly 3.10)" >&2
    echo "help: install it (e.g. \`pyenv install 3.10\` or your distribution's python3.10)" \
         "or point \$PNNC_PYTHON310 at a python3.10 binary" >&2
    return 1
}

python310="$(find_python310)"
if [ ! -x "$venv/bin/python" ] || ! is_python310 "$venv/bin/python"; then
    echo "creating $venv with $python310" >&2
    rm -rf "$venv"
    "$python310" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" -c 'import openfhe, numpy' || {
    echo "error: openfhe did not import in $venv" >&2
    exit 1
}
echo "$venv/bin/python"
