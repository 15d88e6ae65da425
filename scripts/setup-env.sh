#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install sana-video into it.
#
#   scripts/setup-env.sh [VENV_DIR] [EXTRAS]      e.g. scripts/setup-env.sh .venv test
#
# torch is installed first and on purpose: a bare `pip install torch` on Linux pulls a multi-GB CUDA
# build, which a machine without a GPU must not download. With torch already present, installing the
# package reuses it.
set -euo pipefail
venv=${1:-.venv}
extras=${2:-}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: reusing torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
elif [ "$(uname -s)" = "Darwin" ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  # macOS wheels are CPU/MPS builds; a machine with an NVIDIA GPU wants the CUDA build.
  echo "setup: installing torch"
  "${pip[@]}" install torch
else
  # The CPU build is the "+cpu" local version. Machines of this project's kind hold that wheel locally;
  # elsewhere it comes from PyTorch's CPU index (asked only if needed: where it is unreachable pip
  # retries it for every dependency).
  echo "setup: no GPU found, installing the CPU build of torch"
  "${pip[@]}" install "torch==2.13.0+cpu" 2>/dev/null ||
    "${pip[@]}" install "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
echo "setup: installing sana-video ($spec)"
"${pip[@]}" install -e "$spec"
