# PLACEHOLDER: replaced by the kernels branch (plain GEMM entry point for tests/benchmarks).
