#!/usr/bin/env bash
# One run on a GPU machine (torch, numpy, wrapt, pytest, hypothesis preinstalled,
# no internet): the CUDA test set, then the scope benchmark with CUDA initialised.
# Runs from the working tree without installing; under 5 minutes on one H100.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.device_count(), 'device(s)')"
timeout 240 python -m pytest tests/cuda -m cuda -q -p no:cacheprovider -p no:randomly
tests=$?
timeout 120 python -c "import torch; torch.cuda.init(); torch.rand(1, device='cuda'); import runpy; runpy.run_path('benchmarks/bench_scope.py', run_name='__main__')"
exit $tests
