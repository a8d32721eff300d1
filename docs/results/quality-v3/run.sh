#!/bin/sh
# The exact commands behind docs/results/quality-v3/README.md: CPU, 2 shared cores, one torch
# thread per process, ../shared/data/debian-desc (full train split, 43,708 records).
set -e
R=docs/results/quality-v3
T=/tmp/q3
mkdir -p $T
# validation file: the first 300 records of the full validation split (150 are scored per row)
python - <<'PY'
import gzip
lines = gzip.open("/work/shared/data/debian-desc/validation.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:300]
with gzip.open("/tmp/q3/val300.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
PY
# untrained teacher: demo/teacher.py's DEMO_SHAPE (BART 6-6, d_model 128, ffn 512, own BPE
# tokenizer), now with init_std 0.05
OMP_NUM_THREADS=1 python -m demo.teacher $T/teacher-init
# the teacher: cross-entropy, 3600 steps of batch 32 (2.6 epochs), lr 5e-4, through the library
OMP_NUM_THREADS=1 python -m compression finetune $R/teacher_recipe.json --out $T/teacher --device cpu
# the rows, two processes in parallel (one per core), then one pass that writes the full report
ARGS="--teacher $T/teacher --train /work/shared/data/debian-desc/train.jsonl.gz --validation $T/val300.jsonl.gz \
  --steps 800 --max-val 150 --threads 1 --out $R --keep-artifacts $T/artifacts"
A="dq:8-8-8:6-3 qat_only:8-8-8:6-3 ptq:8-8-8:6-3 distill_only:fp32:6-3"
B="dq:2-2-8:6-3 qat_only:2-2-8:6-3 ptq:2-2-8:6-3"
OMP_NUM_THREADS=1 python -m bench.quality $ARGS --configs "$A" > $T/rows-a.log 2>&1 &
OMP_NUM_THREADS=1 python -m bench.quality $ARGS --configs "$B" > $T/rows-b.log 2>&1 &
wait
OMP_NUM_THREADS=1 python -m bench.quality $ARGS --configs "$A $B"
