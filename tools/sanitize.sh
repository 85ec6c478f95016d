#!/usr/bin/env bash
# Build cconv in place with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# test suite under them (libasan preloaded, PYTHONMALLOC=malloc so Python's own
# allocations are checked too). Usage: tools/sanitize.sh [pytest args...]
# Needs gcc's libasan/libubsan (Debian: part of gcc). Leak checking is off: CPython
# keeps allocations alive until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
rm -rf build/sanitize
# --force: the in-place extensions of a normal build are newer than the sources and
# would otherwise be kept (the tests would then run without the sanitizers)
CFLAGS="$SAN" LDFLAGS="$SAN" CCONV_DEBUG=1 python setup.py build_ext --inplace -q --force \
    --build-temp build/sanitize
# fail loudly if the extensions did not pick the sanitizers up
for so in src/cconv/_*.so; do
    # grep without -q reads all of ldd's output: with pipefail, grep -q exiting at the
    # first match could fail the pipeline on ldd's SIGPIPE (seen on _layers)
    ldd "$so" | grep libasan > /dev/null ||
        { echo "sanitize.sh: $so is not an ASan build" >&2; exit 1; }
done
echo "sanitize.sh: the extensions in src/cconv are now ASan builds; rebuild normally" \
     "afterwards (pip install -e . --no-build-isolation)" >&2
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBUBSAN=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$LIBASAN $LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc
PYTHONPATH=src python -m pytest -q -p no:cacheprovider "$@"
