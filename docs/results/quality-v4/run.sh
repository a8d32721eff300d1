#!/bin/sh
# The commands behind docs/results/quality-v4/README.md. CPU, one torch thread per process,
# ../shared/data/debian-desc. Every step resumes where it stopped when started again.
set -e
D=../shared/data/debian-desc
T=${XDG_CACHE_HOME:-$HOME/.cache}/dqbart/teachers/debian-d256
R=docs/results/quality-v4

# 1. The teacher (about 6 CPU hours; resumable): BART 6-6 d256 on the full train split, after
#    1,000 steps of denoising the documents (lr 3e-4, 15% warmup: the defaults since 2026-12-07).
#    data/teachers/debian-d256 carries the trained one (section 1e): this restores it in seconds;
#    add --retrain to train it again (section 1e's run: bf16 from denoising step 750, fp32 before).
OMP_NUM_THREADS=2 python -m bench.teacher --threads 2 --precision bf16 > "$T.log" 2>&1
python -m bench.teacher --save-snapshot   # after a --retrain: data/teachers/debian-d256 (float16)
python -m bench.encoder_spread "$T" --json $R/teacher-spread.json

# 1b. The probes of section 1 (500-1,000 steps each; stopped by hand once they had told apart).
#     The collapsed run of 2026-12-06 was the old default: --lr 5e-4 --warmup 0.03 --denoise-steps 0.
P=${XDG_CACHE_HOME:-$HOME/.cache}/dqbart/teachers
OMP_NUM_THREADS=1 python -m bench.teacher --lr 3e-4 --warmup 0.15 --denoise-steps 0 --out $P/probe-warmup

# 1c. A second learning-rate cycle on the kept teacher (section 1f): 1,500 task steps, lr 5e-4, 3% warmup,
#     seed 28, bf16; the ptq row only to score the continued teacher on the full split (beam 4).
OMP_NUM_THREADS=1 python -m bench.quality --teacher "$T/teacher" --train-teacher-steps 1500 \
  --teacher-out "$T-more1500" --train $D/train.jsonl.gz --validation $D/validation.jsonl.gz \
  --max-val 1029 --selection-samples 300 --num-beams 4 --threads 1 --precision bf16 \
  --out $R/teacher-more --configs "ptq:8-8-8:6-3" > "$T-more1500.log" 2>&1

# 1d. Rounded to float16, scored on the full split against lead-1 and saved as
#     data/teachers/debian-d256-c2 (26 MB) by bench/teacher_second_cycle.py (session 10; removed
#     since). The second cycle is now a bench.teacher stage: the first command restores the carried
#     teacher (seconds), the second runs steps 1c and 1d again in one (about 30 min + scoring).
python -m bench.teacher --cycles 2
#   OMP_NUM_THREADS=1 python -m bench.teacher --cycles 2 --retrain --precision bf16 && \
#   python -m bench.teacher --cycles 2 --save-snapshot

# 2. The student loop's costs.
OMP_NUM_THREADS=1 python -m bench.train_step --loop --threads 1 --repeats 3

# 3. Learning curves at 2-2-8 6-3 (eval every 500 steps on 300 records; final scores on the split).
ARGS="--teacher $T/teacher --train $D/train.jsonl.gz --validation $D/validation.jsonl.gz \
  --max-val 1029 --selection-samples 300 --num-beams 4 --threads 1"
#    Section 2b ran the two rows side by side, one process each (2026-12-07, session 10):
for C in dq qat_only; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --steps 2000 --eval-every 500 --precision bf16 \
    --out $R/curves-$C --configs "$C:2-2-8:6-3" &
done
wait

# 3b. dq against qat_only on the second-cycle teacher (section 2c), 1,000 steps, side by side.
python -m bench.teacher --cycles 2 > /dev/null
T2=${XDG_CACHE_HOME:-$HOME/.cache}/dqbart/teachers/debian-d256-c2/teacher
for C in dq qat_only; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --out $R/c2-short-$C --configs "$C:2-2-8:6-3" &
done
wait

# 3c. The first levers on the second-cycle teacher, 1,000 steps as 3b, side by side (section 3b;
#     session 11). --keep-artifacts keeps each packed student for bench.faithfulness (issue 18).
for O in logits_only norm; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --out $R/c2-lever-$O --keep-artifacts ~/runs/art-$O --configs "dq:2-2-8:6-3:$O" &
done
wait

# 3d. Seeds 29 and 30 of dq norm and qat_only (section 3a; session 11), two rows at a time, then
#     one table of the 1,000-step rows (seeds averaged, with their spread).
for SEED in 29 30; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --seed $SEED --out $R/c2-s$SEED-dqnorm --configs "dq:2-2-8:6-3:norm" &
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --seed $SEED --out $R/c2-s$SEED-qat_only --configs "qat_only:2-2-8:6-3" &
  wait
done
python -m bench.quality_merge $R/c2-short-* $R/c2-lever-* $R/c2-s29-* $R/c2-s30-* --out $R/c2-1000
python -m bench.faithfulness ~/runs/art-norm/dq_2-2-8_6-3_norm --validation $D/validation.jsonl.gz \
  --max-val 1029 --batch-size 16 --threads 1 --out $R/faithfulness/c2-dq-2-2-8-norm.json

# 3e. 8-8-8 6-3, dq (default recipe) and qat_only, 1,000 steps as 3b, side by side (section 3b;
#     session 12), then bench.faithfulness on the dq artifact (issue 18).
for C in dq qat_only; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --out $R/c2-888-$C --keep-artifacts ~/runs/art-888-$C --configs "$C:8-8-8:6-3" &
done
wait
python -m bench.faithfulness ~/runs/art-888-dq/dq_8-8-8_6-3 --validation $D/validation.jsonl.gz \
  --max-val 1029 --batch-size 16 --threads 1 --out $R/faithfulness/c2-dq-8-8-8.json
for C in dq qat_only; do  # seed 29 (session 12), then one table of both seeds
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 1000 --eval-every 250 \
    --precision bf16 --seed 29 --out $R/c2-888-s29-$C --configs "$C:8-8-8:6-3" &
done
wait
python -m bench.quality_merge $R/c2-888-dq $R/c2-888-qat_only $R/c2-888-s29-dq $R/c2-888-s29-qat_only \
  --out $R/c2-888

# 3f. 2,000 steps at 2-2-8 6-3, dq and qat_only side by side (section 3c; session 12).
for C in dq qat_only; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T2" --steps 2000 --eval-every 250 \
    --precision bf16 --out $R/c2-2000-$C --keep-artifacts ~/runs/art-2000-$C --configs "$C:2-2-8:6-3" &
done
wait

# 3g. The third teacher cycle (section 1g; session 13: 79 min, fp32, 2 threads, AMD EPYC with
#     AVX2 only; bf16 where the CPU has it), carried as data/teachers/debian-d256-c3, then its
#     check (not run yet): a qat_only 2-2-8 student trained 2,000 steps from it must not end above
#     it (36.53), with dq beside it.
OMP_NUM_THREADS=2 python -m bench.teacher --cycles 3 --threads 2
python -m bench.teacher --cycles 3 --save-snapshot
T3=${XDG_CACHE_HOME:-$HOME/.cache}/dqbart/teachers/debian-d256-c3/teacher
for C in qat_only dq; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T3" --steps 2000 --eval-every 250 \
    --out $R/c3-2000-$C --keep-artifacts ~/runs/art-c3-2000-$C --configs "$C:2-2-8:6-3" &
done
wait

# 3h. What did fit on an AVX2-only host (session 14): the same pair at 1,000 steps, fp32, side by
#     side (section 3d; 64 and 90 minutes), then bench.faithfulness on each artifact (issue 18).
python -m bench.teacher --cycles 3 > /dev/null
for C in qat_only dq; do
  OMP_NUM_THREADS=1 python -m bench.quality $ARGS --teacher "$T3" --steps 1000 --eval-every 250 \
    --out $R/c3-1000-$C --keep-artifacts ~/runs/art-c3-1000-$C --configs "$C:2-2-8:6-3" &
done
wait
for C in qat_only dq; do
  OMP_NUM_THREADS=1 python -m bench.faithfulness ~/runs/art-c3-1000-$C/${C}_2-2-8_6-3 \
    --validation $D/validation.jsonl.gz --max-val 1029 --batch-size 16 --threads 1 \
    --out $R/faithfulness/c3-$C-2-2-8.json
done

# 4. The levers at a short budget.
OMP_NUM_THREADS=1 python -m bench.quality $ARGS --steps 1000 --out $R/ablation --configs \
  "qat_only:2-2-8:6-3 dq:2-2-8:6-3 dq:2-2-8:6-3:kl dq:2-2-8:6-3:kl_t2 dq:2-2-8:6-3:norm \
   dq:2-2-8:6-3:logits_only dq:2-2-8:6-3:weighted dq:2-2-8:6-3:seq dq:2-2-8:6-3:seq_mix \
   dq:2-2-8:6-3:g64 dq:2-2-8:6-3:lsq dq:2-2-8:6-3:sym2"

# 5. The study at the converged budget N from step 3 (set STEPS), with the winning options.
STEPS=${STEPS:-3000}
OMP_NUM_THREADS=1 python -m bench.quality $ARGS --steps "$STEPS" --out $R/study --configs \
  "dq:8-8-8:6-3@3 qat_only:8-8-8:6-3@3 dq:2-2-8:6-3@3 qat_only:2-2-8:6-3@3 \
   ptq:8-8-8:6-3 distill_only:fp32:6-3 ptq:2-2-8:6-3 ptq:4-4-8:6-3 qat_only:4-4-8:6-3 dq:4-4-8:6-3 \
   dq:2-2-8:6-6 dq:2-2-8:3-1"
