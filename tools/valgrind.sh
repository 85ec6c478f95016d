#!/usr/bin/env bash
# Run a representative subset of the test suite under valgrind memcheck: every forward
# algorithm (direct, im2col, depthwise, Winograd), the GEMM cores, the backward passes,
# transposed convolution, NaN/Inf handling, the API checks, the nn layers and 8-thread
# concurrency, on the small shapes the tests use.
# Any memcheck error (invalid read/write, use of uninitialised memory, bad free) fails the
# run (--error-exitcode=1). About 10 minutes on one core (2027 tests).
#
# Usage: tools/valgrind.sh [pytest args...]   (default: the subset below)
# Environment:
#   VALGRIND_PYTHON  interpreter to use (default: the first python3.12 / python3.13 found,
#                    also under ~/.pyenv). CPython 3.11 is avoided on purpose: its
#                    maybe_small_long() multiplies an uninitialised digit by 0 for every
#                    int 0 made by int.from_bytes / int(str) (fixed in 3.12), and memcheck
#                    then flags every later use of that int across the interpreter.
#   VALGRIND_VENV    virtual environment to create / reuse (default build/valgrind-venv)
#   VALGRIND_NO_BUILD=1  skip copying the source to build/valgrind-src and building it
#                    there (normal -O3 build, plus -g)
#   CCONV_ISA        kernel path. valgrind 3.19 has no AVX-512: its virtual CPU reports
#                    AVX2, so the default run takes the AVX2 path; CCONV_ISA=avx512 fails
#                    at import (the CPU valgrind shows lacks it); CCONV_ISA=generic runs
#                    the portable C path.
# Python's allocator is bypassed (PYTHONMALLOC=malloc) so memcheck sees every object;
# tools/valgrind-python.supp holds the few suppressions, each explained; none names
# anything in cconv.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

find_python() {
    if [ -n "${VALGRIND_PYTHON:-}" ]; then echo "$VALGRIND_PYTHON"; return; fi
    for p in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
             "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
        # (a pyenv shim exists for every version but runs only the selected ones)
        if "$p" -c "import sys" >/dev/null 2>&1; then
            "$p" -c "import sys; print(sys.executable)"; return
        fi
    done
    echo "tools/valgrind.sh: no python3.12/3.13 found; set VALGRIND_PYTHON" >&2
    exit 2
}

venv="${VALGRIND_VENV:-$root/build/valgrind-venv}"
if [ ! -x "$venv/bin/python" ]; then
    "$(find_python)" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --only-binary=:all: numpy pytest hypothesis \
        threadpoolctl "Cython>=3.0" "setuptools>=77"
fi
# the real interpreter binary (a pyenv shim is a shell script: valgrind would trace it)
py="$("$venv/bin/python" -c 'import sys; print(sys.executable)')"

# Build from a copy of the source (tracked and new files) in build/valgrind-src, so that
# neither the Cython output nor the extensions of this venv's Python / NumPy land in the
# working tree (its in-place build stays as it is).
src="$root/build/valgrind-src"
if [ "${VALGRIND_NO_BUILD:-0}" = "0" ]; then
    mkdir -p "$src"
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -f "$f" ] && cp -p --parents -- "$f" "$src/"; done
    # the normal optimised build (setup.py's -O3) plus -g for readable stacks
    (cd "$src" && CFLAGS="-g" CCONV_BUILD_JOBS="${CCONV_BUILD_JOBS:-1}" "$py" setup.py -q \
        build_ext --inplace)
fi

if [ $# -eq 0 ]; then
    # Each algorithm's own tests plus the cross-cutting ones. Left out: the forced-ISA
    # comparisons (they exec child interpreters, which valgrind does not trace; a fork
    # child, as in test_concurrency, stays under valgrind) and the PyTorch comparisons
    # (torch is not installed in this venv).
    set -- tests/test_forward.py tests/test_depthwise.py tests/test_winograd.py \
        tests/test_backward.py tests/test_transpose.py tests/test_nonfinite.py \
        tests/test_packed.py tests/test_api.py tests/test_gemm.py tests/test_igemm.py \
        tests/test_nn.py tests/test_concurrency.py \
        -k "not isa_paths and not forced_isa and not torch and not aten and not sweep_long"
fi

export PYTHONMALLOC=malloc
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"   # two threads: the threaded paths run too
export OMP_WAIT_POLICY=passive                    # no spinning: valgrind runs one thread at a time
export PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$src/src"
cd "$src"   # its tests/ too: the suite as it was copied
log="${VALGRIND_LOG:-$root/build/valgrind.log}"
mkdir -p "$(dirname "$log")"
echo "valgrind $(valgrind --version | sed 's/valgrind-//'), $("$py" --version), OMP_NUM_THREADS=$OMP_NUM_THREADS, CCONV_ISA=${CCONV_ISA:-native}; log: $log"
set +e
valgrind --tool=memcheck --error-exitcode=1 --num-callers=30 \
    --suppressions="$root/tools/valgrind-python.supp" --log-file="$log" \
    "$py" -m pytest -q -p no:cacheprovider -m "not slow" "$@"
rc=$?
set -e
grep -E "ERROR SUMMARY|Invalid|uninitialised|unhandled instruction" "$log" | sort | uniq -c | tail -20
exit $rc
