#!/bin/sh
# The exact commands behind docs/results/quality-v2/README.md (2 shared CPU cores, one torch
# thread per process). No bench.quality rows were run: no teacher trained here reads its input
# (see README.md), so the DQ-BART rows would again measure nothing.
set -e
R=docs/results/quality-v2
T=/tmp/h6
mkdir -p $T
# validation subset: the first 150 records of the full validation split
python - <<'PY'
import gzip
lines = gzip.open("/work/shared/data/debian-desc/validation.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:150]
with gzip.open("/tmp/h6/val150.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
PY
# untrained teachers: demo/teacher.py's DEMO_SHAPE (BART 6-6, d_model 128, ffn 512, own BPE
# tokenizer, init_std 0.02), and the same shape at 3-3
OMP_NUM_THREADS=1 python -m demo.teacher $T/teacher-init
python -c "from pathlib import Path; from dataclasses import replace; from demo.teacher import DEMO_SHAPE, build_teacher; \
build_teacher(Path('$T/teacher-init-33'), replace(DEMO_SHAPE, encoder_layers=3, decoder_layers=3))"
# cross-entropy training on the FULL train split (43,708 records), batch 32, src 128, tgt 32.
# lr 1e-3 (1200 steps planned, stopped after step 600) and lr 3e-4 / 3-3 lr 5e-4 (stopped after
# step 100) were stopped once the encoder had collapsed; lr 1e-4 ran to the end.
OMP_NUM_THREADS=1 timeout 1500 python -m compression finetune $R/teacher_recipe_lr1e-3.json --out $T/teacher --device cpu
OMP_NUM_THREADS=1 timeout 1500 python -m compression finetune $R/teacher_recipe_lr3e-4.json --out $T/teacher_a --device cpu &
OMP_NUM_THREADS=1 timeout 1500 python -m compression finetune $R/teacher_recipe_lr1e-4.json --out $T/teacher_b --device cpu &
OMP_NUM_THREADS=1 timeout 1500 python -m compression finetune $R/teacher_recipe_3-3_lr5e-4.json --out $T/teacher_c --device cpu &
wait
# the probes (matched-vs-shuffled loss, per-layer encoder spread) are printed in README.md
