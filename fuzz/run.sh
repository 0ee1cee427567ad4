#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, niced, each for FUZZ_SECONDS (default 20),
# and prints how many inputs each one executed. Exits non-zero if any target found a crash
# (libFuzzer leaves the input under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh                         every target
#   FUZZ_SECONDS=600 fuzz/run.sh token  one target, ten minutes
#
# cargo-fuzz needs nightly compiler features (sanitizers, coverage instrumentation): the
# stable toolchain provides them with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
# Inputs found are kept in fuzz/corpus/<target> (not committed); the committed seeds are in
# fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-20}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io" >&2
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

nice -n 19 cargo fuzz build "${targets[@]:0:1}" >/dev/null 2>&1 || true  # warm the shared build
mkdir -p artifacts
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="artifacts/$t.log"
  echo "== $t: ${seconds}s" >&2
  if nice -n 19 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" >&2 || tail -30 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  summary+=("$(printf '%-18s %-6s %12s executions  %6s coverage  %5s corpus files' \
    "$t" "$status" "${runs:-?}" "${cov:-?}" "$(find "corpus/$t" -type f | wc -l)")")
done
printf '%s\n' "fuzz: ${seconds}s per target" "${summary[@]}"
exit $failed
