"""Build cconv's Cython extensions.

OpenMP: used when the compiler can build an OpenMP test program (``-fopenmp``; on
macOS, Apple clang's ``-Xpreprocessor -fopenmp`` with ``-lomp``, Homebrew's libomp found
through CPPFLAGS / LDFLAGS); otherwise the package builds without it and runs on one
thread. ``CCONV_NO_OPENMP=1`` skips it.
``CCONV_DEBUG=1`` at build time turns on Cython bounds checks and C asserts.
``CCONV_BUILD_JOBS=n`` compiles n extensions at a time (default: every core).
"""
import copy
import glob
import os
import shlex
import sys
import sysconfig
import tempfile
import textwrap
from setuptools import setup, Extension
from setuptools.command.build_ext import build_ext

import numpy as np
from Cython.Build import cythonize

DEBUG = os.environ.get("CCONV_DEBUG", "0") not in ("", "0")
KERNEL_DIR = os.path.join("src", "cconv", "_kernels")

# Every extension that runs GEMM-based code compiles the kernels into itself:
# no shared library to locate at run time.
KERNEL_SOURCES = [os.path.join(KERNEL_DIR, "gemm.c"), os.path.join(KERNEL_DIR, "pack.c")]

EXTENSIONS = {
    "cconv._core": [],
    "cconv._arraycache": [os.path.join(KERNEL_DIR, "arraycache.c")],
    # direct_fewc.c dispatches on the ISA state kept in gemm.c: compiled together.
    "cconv._direct": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, "direct_fewc.c")],
    "cconv._layers": [],
    # unpack.c and pwfew.c dispatch on the ISA state kept in gemm.c: compiled together.
    "cconv._im2col": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, f)
                                       for f in ("unpack.c", "pwfew.c")],
    "cconv._gemm": KERNEL_SOURCES,
    # depthwise.c dispatches on the ISA state kept in gemm.c: compiled together.
    "cconv._depthwise": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, "depthwise.c")],
    # gwdot.c dispatches on the ISA state kept in gemm.c: compiled together.
    "cconv._backward": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, f)
                                         for f in ("packt.c", "gwdot.c", "biasgrad.c", "dwgi.c")],
    # the transforms dispatch on the ISA state kept in gemm.c: compiled together.
    "cconv._winograd": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, "winograd.c")],
    # the channel sum dispatches on the ISA state kept in gemm.c: compiled together.
    "cconv._fft": KERNEL_SOURCES + [os.path.join(KERNEL_DIR, "fftmac.c")],
}


def _openmp_flags(cc):
    """(compile flags, link flags) with which this compiler builds and links a tiny
    OpenMP program, or None when no candidate works."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag: OpenMP through the preprocessor and
        # libomp (Homebrew: CPPFLAGS=-I$(brew --prefix libomp)/include,
        # LDFLAGS=-L$(brew --prefix libomp)/lib); delocate bundles it into the wheel.
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    src = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return omp_get_max_threads() > 0 ? 0 : 1;
        }
        """
    )
    # LDFLAGS too: a sanitizer build (tools/sanitize.sh) must link its runtime, and
    # macOS finds libomp through it
    env_ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
    for cflags, ldflags in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "omp_test.c")
            with open(path, "w") as f:
                f.write(src)
            try:
                objs = cc.compile([path], output_dir=tmp, extra_postargs=cflags)
                cc.link_executable(objs, os.path.join(tmp, "omp_test"),
                                   extra_postargs=ldflags + env_ldflags)
            except Exception:
                continue
        return cflags, ldflags
    return None


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # compile the extensions side by side (default: every core)
            jobs = os.environ.get("CCONV_BUILD_JOBS", "").strip()
            self.parallel = int(jobs) if jobs else (os.cpu_count() or 1)

    def build_extensions(self):
        omp = None
        if os.environ.get("CCONV_NO_OPENMP", "0") in ("", "0"):
            omp = _openmp_flags(self.compiler)
        use_omp = omp is not None
        cflags = ["-O3", "-std=c11", "-fno-strict-aliasing"]
        if not DEBUG:
            cflags.append("-DNDEBUG")
        else:
            cflags += ["-UNDEBUG", "-g"]
        # No -ffast-math: it breaks NaN/Inf handling and reproducibility.
        # FMA contraction off in generic C so every ISA path rounds the same way
        # as written (the SIMD paths use explicit FMA intrinsics).
        cflags.append("-ffp-contract=off")
        ldflags = []
        if use_omp:
            cflags += omp[0]
            ldflags += omp[1]
        for ext in self.extensions:
            ext.extra_compile_args = list(cflags)
            if ext.name == "cconv._depthwise":
                # Python's own CFLAGS carry -fwrapv (CPython needs it; Cython output does
                # not): under it GCC gave the channels-last depthwise tiles a register copy
                # per FMA (5x5 240@28 ran 1.7x slower). Only here: the few-channel direct
                # kernel (cifar_b1) ran 10% slower without it.
                ext.extra_compile_args.append("-fno-wrapv")
            ext.extra_link_args = list(ldflags)
            ext.define_macros = list(ext.define_macros or []) + [
                ("CCONV_OPENMP", "1" if use_omp else "0"),
                ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
            ]
        self._cconv_openmp = use_omp
        super().build_extensions()

    def build_extension(self, ext):
        # The kernel sources (gemm.c, pack.c) are compiled into several extensions: with
        # one shared object folder, a parallel build lets one extension link gemm.o while
        # another rewrites it (seen: "undefined symbol: cconv_isa_select" in a fresh
        # build). Each extension gets its own folder, on a copy of this command so that
        # the threads of a parallel build never share the attribute.
        cmd = copy.copy(self)
        cmd.build_temp = os.path.join(self.build_temp, ext.name)
        build_ext.build_extension(cmd, ext)


def extensions():
    exts = []
    for name, extra in EXTENSIONS.items():
        pyx = os.path.join("src", *name.split(".")) + ".pyx"
        exts.append(
            Extension(
                name,
                [pyx] + list(extra),
                include_dirs=[np.get_include(), KERNEL_DIR],
                # a header edit rebuilds every extension (they are small)
                depends=sorted(glob.glob(os.path.join(KERNEL_DIR, "*.h"))),
                language="c",
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": False,
        "initializedcheck": DEBUG,
        "cdivision": True,
        "embedsignature": True,
    }
    compile_time_env = {"CCONV_DEBUG": DEBUG}
    return cythonize(
        exts,
        compiler_directives=directives,
        compile_time_env=compile_time_env,
        include_path=[os.path.join("src", "cconv"), KERNEL_DIR],
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
