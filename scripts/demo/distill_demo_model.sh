#!/usr/bin/env bash
# Distils the embedded demo pipeline into a few-step student (soraplan distill --method lcm: 4 steps,
# no guidance pass) on the synthetic world it was trained on, on CPU, then measures it.
#
#   bash scripts/demo/distill_demo_model.sh                 # every stage, in order
#   bash scripts/demo/distill_demo_model.sh distill         # one stage (or several)
#
# Stages: data (the world's training clips, as train_demo_model.sh makes them; skipped when present),
# distill, eval (soraplan eval on the student, 64 + 64 held-out clips), bench (bench/distill.py: the
# student at 2/4/8 evaluations against the teacher at 200 and the teacher's fast solvers). Each resumes
# where it stopped (distill from its latest checkpoint); wall time per stage goes to
# $OUT/stage_times.txt.
# Environment: OUT (default runs/demo_student), WORLD (the folder of train_demo_model.sh holding
# world_train/; default runs/demo_model), TEACHER (default: the embedded pipeline), DISTILL_STEPS,
# LR, STUDENT_STEPS, MASK_CONFIG (the mask mix; default the teacher's last I2V run's, transition-heavy),
# EVAL_CLIPS, SHIP=1 to copy the student beside the embedded pipeline.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-runs/demo_student}
WORLD=${WORLD:-runs/demo_model}
TEACHER=${TEACHER:-$ROOT/src/soraplan/assets/demo/pipeline}
DISTILL_STEPS=${DISTILL_STEPS:-3000}
LR=${LR:-1e-4}
STUDENT_STEPS=${STUDENT_STEPS:-4}
MASK_CONFIG=${MASK_CONFIG:-$HERE/mask_config_i2v_more.yaml}
EVAL_CLIPS=${EVAL_CLIPS:-64}
SORAPLAN=${SORAPLAN:-soraplan}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"

# 1. the training clips of the teacher's world (train_demo_model.sh's data stage)
stage_data() {
  [ -f "$WORLD/world_train/data.txt" ] || OUT="$WORLD" SORAPLAN="$SORAPLAN" PYTHON="$PYTHON" \
    bash "$HERE/train_demo_model.sh" data
}

# 2. the student: latent consistency distillation with the teacher's guidance built in (each example at
#    its mask type's default), the mask mix of the teacher's last run and its clip shape; EMA weights
#    are the ones shipped
stage_distill() {
  $SORAPLAN distill --teacher "$TEACHER" --method lcm --student_steps "$STUDENT_STEPS" --teacher_steps 40 \
    --data "$WORLD/world_train/data.txt" --output_dir "$OUT/run" --mask_config "$MASK_CONFIG" \
    --num_frames 17 --max_height 64 --max_width 64 --min_num_frames 17 --train_fps 8 \
    --model_max_length 80 --text_cache_dir "$OUT/text_cache" \
    --train_batch_size 8 --learning_rate "$LR" --lr_warmup_steps 100 --lr_scheduler cosine \
    --max_grad_norm 1.0 --max_train_steps "$DISTILL_STEPS" --use_ema --ema_decay 0.999 \
    --checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
    --log_steps 50 --seed 2
}

# 3. the evaluation of `soraplan eval` on the student, at its own steps and without guidance
stage_eval() {
  $SORAPLAN eval --pipeline "$OUT/run/pipeline" --clips "$EVAL_CLIPS" --output "$OUT/eval.json"
  if [ "${SHIP:-0}" = 1 ]; then  # (the records name the teacher by its place in the repository, not this machine's path)
    rm -rf "$ROOT/src/soraplan/assets/demo/student"
    cp -r "$OUT/run/pipeline" "$ROOT/src/soraplan/assets/demo/student"
    $PYTHON - "$ROOT/src/soraplan/assets/demo/student/distillation.json" <<'PY'
import json, sys
from pathlib import Path
record = json.load(open(sys.argv[1]))
record["teacher"] = "src/soraplan/assets/demo/pipeline (the embedded demo pipeline)"
open(sys.argv[1], "w").write(json.dumps(record, indent=1))
for config in Path(sys.argv[1]).parent.glob("*/config.json"):  # where the weights were read from
    fields = json.loads(config.read_text())
    if fields.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
PY
  fi
}

# 4. against the teacher: every metric, evaluations and seconds per video (the README's table)
stage_bench() {
  $PYTHON "$ROOT/bench/distill.py" --teacher "$TEACHER" --student "$OUT/run/pipeline" --clips "$EVAL_CLIPS" \
    --solvers DPMSolverMultistep,DPMSolverMultistepSDE,DDIM \
    --output "$OUT/bench.json"
}

source "$HERE/stages.sh"
run_stages data distill eval bench -- "$@"
