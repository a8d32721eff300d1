#!/bin/sh
# The exact commands of the CPU benchmark in this folder (2 shared CPU cores, one torch thread per
# process, two processes writing to the same rows.jsonl; the last command only merges the rows).
# The teacher: /tmp/h5bench/teacher-s300 is demo/teacher.py's DEMO_SHAPE (6-6, d_model 128) trained
# from random init for 300 steps with a plain cross-entropy loop (AdamW lr 2e-3, batch 32); the
# first command trains it 900 more steps with compression.finetune (same loss) into TEACHER.
set -e
OUT=docs/results/quality
TEACHER=/tmp/h5bench/teacher
COMMON="--steps 200 --max-val 100 --num-beams 2 --threads 1 --out $OUT"
python -m bench.quality --teacher /tmp/h5bench/teacher-s300 --train-teacher-steps 900 --teacher-out $TEACHER $COMMON \
  --configs "dq:8-8-8:6-3 ptq:8-8-8:6-3 qat_only:8-8-8:6-3 dq:2-2-8:6-3:per_tensor dq:2-2-8:6-3:lsq dq:4-4-8:6-3" &
while [ ! -f $TEACHER/config.json ]; do sleep 20; done
python -m bench.quality --teacher $TEACHER $COMMON \
  --configs "dq:2-2-8:6-3 ptq:2-2-8:6-3 qat_only:2-2-8:6-3 distill_only:fp32:6-3 dq:2-2-8:6-3:no_mask dq:8-8-8:3-1" &
wait
python -m bench.quality --teacher $TEACHER $COMMON --configs "dq:8-8-8:6-3 ptq:8-8-8:6-3 qat_only:8-8-8:6-3 \
dq:2-2-8:6-3 ptq:2-2-8:6-3 qat_only:2-2-8:6-3 distill_only:fp32:6-3 dq:2-2-8:6-3:per_tensor \
dq:2-2-8:6-3:no_mask dq:2-2-8:6-3:lsq dq:4-4-8:6-3 dq:8-8-8:3-1"
