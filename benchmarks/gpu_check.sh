#!/usr/bin/env bash
# The checks that need a GPU, in one command: the CUDA tests, then the GPU benchmarks, whose figures are
# appended to benchmarks/RESULTS.md (and copied to $OUT, where a device runner collects files) with the
# date, the GPU and the command of each. Run it whenever a GPU machine is at hand:
#
#   bash benchmarks/gpu_check.sh           # everything (about 10 minutes on one H100)
#   bash benchmarks/gpu_check.sh --list    # the checks it would run, and nothing else
#   bash benchmarks/gpu_check.sh --quick   # fewer repeats, for a device with little time left
#
# On a machine without CUDA it says so and exits 0: none of the checks can run there.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  --list) mode=list ;;
  --quick) mode=quick ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--list | --quick]" >&2; exit 2 ;;
esac
repeats=10; steps=300
if [ "$mode" = quick ]; then repeats=4; steps=100; fi

# The tests that skip without CUDA live in these files (their CPU tests run too: they are quick).
cuda_tests="tests/train/test_augment.py tests/train/test_cost.py tests/train/test_data.py
  tests/study/test_gpus_per_trial.py tests/study/test_runner.py tests/plugins/test_mixed_precision.py
  tests/plugins/test_grad_clip.py tests/plugins/test_foreign_models.py"
checks=(
  "CUDA tests|python3 -m pytest -q -rs -m 'not postgres' $(echo $cuda_tests)"
  "trainer overhead|python3 benchmarks/trainer_overhead.py --device cuda --steps $steps --repeats $repeats"
  "trainer overhead, bf16 + channels_last against an airbench-style loop|python3 benchmarks/trainer_overhead.py --device cuda --fast --model resnet9 --width 1 --batch-size 512 --n-train 8192 --steps $steps --repeats $repeats"
  "checkpoint overhead|python3 benchmarks/checkpoint_overhead.py --device cuda --repeats $repeats"
  "loader throughput (streamed image folder)|python3 benchmarks/loader_throughput.py --device cuda --repeats $repeats"
  "streamed against in-memory|python3 benchmarks/stream_vs_memory.py --device cuda --repeats $repeats"
  "FreezeOut speed|python3 benchmarks/freezeout_speed.py --device cuda --repeats $repeats"
  "2 GPUs against 1 (only with 2 or more GPUs)|python3 benchmarks/multi_gpu.py --device cuda --model resnet9 --width 1 --batch-size 512 --steps 50"
)

if [ "$mode" = list ]; then
  for check in "${checks[@]}"; do printf '%-70s %s\n' "${check%%|*}" "${check#*|}"; done
  exit 0
fi

python3 -c "import automl, torch" 2>/dev/null || python3 -m pip install -q -e ".[dev]" || exit 1
gpus=$(python3 -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$gpus" = 0 ]; then
  echo "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); none of the" \
       "${#checks[@]} checks could run"
  exit 0
fi

gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name(0))")
torch_version=$(python3 -c "import torch; print(torch.__version__)")
section=$(mktemp)
{
  echo
  echo "## GPU check, $(date -u +%Y-%m-%d), ${gpus} x ${gpu}"
  echo
  echo "\`bash benchmarks/gpu_check.sh${1:+ $1}\` (torch ${torch_version}); each check's command and its last lines."
} > "$section"
failed=0
for check in "${checks[@]}"; do
  name=${check%%|*}; command=${check#*|}
  if [[ "$name" == 2\ GPUs* ]] && [ "$gpus" -lt 2 ]; then
    printf '\n### %s\n\nnot run: one GPU only\n' "$name" >> "$section"; continue
  fi
  echo "== $name: $command"
  log=$(mktemp)
  bash -c "$command" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || failed=1
  { printf '\n### %s\n\n```text\n$ %s   # exit %s\n' "$name" "$command" "$status"; tail -n 8 "$log"; echo '```'; } >> "$section"
done
cat "$section" >> benchmarks/RESULTS.md
if [ -n "${OUT:-}" ]; then cp "$section" "$OUT/gpu_check.md"; fi
echo "gpu_check: figures appended to benchmarks/RESULTS.md"
exit $failed
