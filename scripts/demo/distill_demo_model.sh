#!/usr/bin/env bash
# Distils the embedded demo pipeline into a few-step student (soraplan distill --method lcm: one step by
# default, no guidance pass) on the synthetic world it was trained on, on CPU, then measures it.
#
#   bash scripts/demo/distill_demo_model.sh                 # every stage, in order
#   bash scripts/demo/distill_demo_model.sh distill         # one stage (or several)
#
# Stages: data (the world's training clips, as train_demo_model.sh makes them; skipped when present),
# distill, anchor (more LCM steps from that student with the given-frames term of the loss, which
# brings the frames the user gave back sharper), eval (soraplan eval on the student, 64 + 64 held-out
# clips), bench (bench/distill.py: the student at 2/4/8 evaluations against the teacher at 200 and the
# teacher's fast solvers). Each resumes where it stopped (distill and anchor from their latest
# checkpoints); wall time per stage goes to $OUT/stage_times.txt.
# Environment: OUT (default runs/demo_student), WORLD (the folder of train_demo_model.sh holding
# world_train/; default runs/demo_model), TEACHER (default: the embedded pipeline), DISTILL_STEPS,
# LR, STUDENT_STEPS, MASK_CONFIG (the mask mix; default the teacher's last I2V run's, transition-heavy),
# ANCHOR_STEPS (0: no anchor stage; eval and bench then take the distill stage's student),
# GIVEN_FRAMES_WEIGHT, GIVEN_FRAMES_FROM_NOISE=1 (the term also at t = 999; measured in the README, not
# the shipped student's), EVAL_CLIPS, SHIP=1 to copy the student beside the embedded pipeline.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-runs/demo_student}
WORLD=${WORLD:-runs/demo_model}
TEACHER=${TEACHER:-$ROOT/src/soraplan/assets/demo/pipeline}
DISTILL_STEPS=${DISTILL_STEPS:-3000}
LR=${LR:-1e-4}
STUDENT_STEPS=${STUDENT_STEPS:-1}  # its default sampling steps only: the training is the same for any
MASK_CONFIG=${MASK_CONFIG:-$HERE/mask_config_i2v_more.yaml}
ANCHOR_STEPS=${ANCHOR_STEPS:-500}
GIVEN_FRAMES_WEIGHT=${GIVEN_FRAMES_WEIGHT:-10}
GIVEN_FRAMES_FROM_NOISE=${GIVEN_FRAMES_FROM_NOISE:-0}
EVAL_CLIPS=${EVAL_CLIPS:-64}
SORAPLAN=${SORAPLAN:-soraplan}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# 1. the training clips of the teacher's world (train_demo_model.sh's data stage)
stage_data() {
  [ -f "$WORLD/world_train/data.txt" ] || OUT="$WORLD" SORAPLAN="$SORAPLAN" PYTHON="$PYTHON" \
    bash "$HERE/train_demo_model.sh" data
}

# what both distillation stages share: the teacher, its world's clips at its clip shape, the mask mix
# of the teacher's last run, batch, checkpoints and resume
distill_flags=(--teacher "$TEACHER" --method lcm --student_steps "$STUDENT_STEPS" --teacher_steps 40
  --data "$WORLD/world_train/data.txt" --mask_config "$MASK_CONFIG"
  --num_frames 17 --max_height 64 --max_width 64 --min_num_frames 17 --train_fps 8
  --model_max_length 80 --text_cache_dir "$OUT/text_cache" --train_batch_size 8 --lr_scheduler cosine
  --max_grad_norm 1.0 --use_ema --checkpointing_steps 250 --checkpoints_total_limit 1
  --resume_from_checkpoint latest)

# 2. the student: latent consistency distillation with the teacher's guidance built in (each example at
#    its mask type's default); EMA weights are the ones kept
stage_distill() {
  $SORAPLAN distill "${distill_flags[@]}" --output_dir "$OUT/run" --learning_rate "$LR" --lr_warmup_steps 100 \
    --max_train_steps "$DISTILL_STEPS" --ema_decay 0.999 --log_steps 50 --seed 2
}

# 3. the given frames anchored: ANCHOR_STEPS more steps from that student, the consistency loss plus
#    the given-frames term (the student's clean estimate of the latent frames that hold given frames,
#    pulled to the clip's own), at half the learning rate, a shorter EMA
stage_anchor() {
  [ "$ANCHOR_STEPS" -gt 0 ] || return 0
  local from_noise=()
  [ "$GIVEN_FRAMES_FROM_NOISE" = 1 ] && from_noise=(--given_frames_from_noise)
  $SORAPLAN distill "${distill_flags[@]}" --output_dir "$OUT/anchored" --student_init "$OUT/run/pipeline" \
    --given_frames_weight "$GIVEN_FRAMES_WEIGHT" "${from_noise[@]}" --learning_rate 5e-5 --lr_warmup_steps 50 \
    --max_train_steps "$ANCHOR_STEPS" --ema_decay 0.995 --log_steps 25 --seed 3
}

# the student the later stages measure (and SHIP=1 copies)
student() {
  if [ "$ANCHOR_STEPS" -gt 0 ]; then echo "$OUT/anchored/pipeline"; else echo "$OUT/run/pipeline"; fi
}

# 4. the evaluation of `soraplan eval` on the student, at its own steps and without guidance
stage_eval() {
  $SORAPLAN eval --pipeline "$(student)" --clips "$EVAL_CLIPS" --output "$OUT/eval.json"
  if [ "${SHIP:-0}" = 1 ]; then  # (the records name the teacher by its place in the repository, not this machine's path)
    rm -rf "$ROOT/src/soraplan/assets/demo/student"
    cp -r "$(student)" "$ROOT/src/soraplan/assets/demo/student"
    $PYTHON - "$ROOT/src/soraplan/assets/demo/student/distillation.json" <<'PY'
import json, sys
from pathlib import Path
record = json.load(open(sys.argv[1]))
for level in (record, record.get("student_init_distillation") or {}):
    if "teacher" in level:
        level["teacher"] = "src/soraplan/assets/demo/pipeline (the embedded demo pipeline)"
if record.get("student_init"):
    record["student_init"] = "the distill stage's student (scripts/demo/distill_demo_model.sh)"
open(sys.argv[1], "w").write(json.dumps(record, indent=1))
for config in Path(sys.argv[1]).parent.glob("*/config.json"):  # where the weights were read from
    fields = json.loads(config.read_text())
    if fields.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
PY
  fi
}

# 5. against the teacher: every metric, evaluations and seconds per video (the README's table)
stage_bench() {
  $PYTHON "$ROOT/bench/distill.py" --teacher "$TEACHER" --student "$(student)" --clips "$EVAL_CLIPS" \
    --solvers DPMSolverMultistep,DPMSolverMultistepSDE,DDIM \
    --output "$OUT/bench.json"
}

source "$HERE/stages.sh"
run_stages data distill anchor eval bench -- "$@"
