"""Runtime ISA path selection shared by the modules that embed the GEMM kernels.

Each such module carries its own copy of the kernels (no shared library to find at
run time), so the choice is applied to each of them: the best path the CPU supports,
or the one forced with the environment variable ``CCONV_ISA=avx512|avx2|generic``.
"""
import os

ISA_ENV = "CCONV_ISA"


def configure(*modules):
    forced = os.environ.get(ISA_ENV, "").strip().lower()
    if not forced:
        return
    for mod in modules:
        try:
            mod.isa_select(forced)
        except ValueError:
            raise ValueError(
                f"{ISA_ENV}={forced!r} is not a known path; use avx512, avx2 or generic"
            ) from None
        except RuntimeError as e:
            raise RuntimeError(f"{ISA_ENV}={forced!r}: {e}") from None
