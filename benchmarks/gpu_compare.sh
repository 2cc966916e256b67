#!/usr/bin/env bash
# The `compare` benchmark on a GPU host whose Python has torch, transformers, sentence-transformers,
# numpy and pyarrow (no polars, no Ray needed). Prepare the two inputs on a dev box first:
#   .venv/bin/python benchmarks/bench_extract.py export-skills --out gpu_carry/skills.parquet
#   (model: any encoder dir; the bundled MiniLM saved with weights in fp16 fits a 64 MiB transfer,
#    it is upcast to fp32 here so every path runs the same fp32 weights)
# Usage: benchmarks/gpu_compare.sh MODEL_DIR SKILLS_PARQUET OUT_DIR [extra bench_extract.py args]
# (DEVICE=cpu runs the same code path without a GPU, as the dev-box check of this script does.)
set -euo pipefail
MODEL=$1 SKILLS=$2 OUT=$3
shift 3
DEVICE=${DEVICE:-cuda}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=$(command -v python3 || command -v python)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv > "$OUT/gpu.txt" 2>&1 || true
"$PY" -c "import torch, transformers, sentence_transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'st', sentence_transformers.__version__)" > "$OUT/versions.txt"
"$PY" - "$MODEL" "$WORK/model32" <<'PYEOF'
import sys
from skilltrain.model import BiEncoder
model = BiEncoder.from_pretrained(sys.argv[1])
model.transformer.float()
model.save(sys.argv[2])
PYEOF
"$PY" benchmarks/bench_extract.py compare --device "$DEVICE" --model "$WORK/model32" --skills-parquet "$SKILLS" "$@" > "$OUT/compare_gpu.jsonl"
cat "$OUT/gpu.txt" "$OUT/versions.txt" "$OUT/compare_gpu.jsonl"
