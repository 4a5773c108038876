# Stage runner shared by the demo recipes (sourced, not run): `run_stages STAGE... -- "$@"` checks
# every asked-for stage name first (a typo fails before hours of work), runs each `stage_<name>` in
# order (all of ALL when none is asked for) and appends its wall time to $OUT/stage_times.txt.
run_stages() {
  local all=() asked=() stage started
  while [ $# -gt 0 ] && [ "$1" != -- ]; do all+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  asked=("$@")
  [ ${#asked[@]} -gt 0 ] || asked=("${all[@]}")
  for stage in "${asked[@]}"; do
    case " ${all[*]} " in *" $stage "*) ;; *) echo "unknown stage '$stage'; stages: ${all[*]}" >&2; exit 2;; esac
  done
  for stage in "${asked[@]}"; do
    started=$(date +%s)
    "stage_$stage"
    echo "$stage $(( $(date +%s) - started )) s" | tee -a "$OUT/stage_times.txt"
  done
}
