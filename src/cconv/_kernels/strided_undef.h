/* Undo one instantiation's macros of strided_impl.h (gemm.c): the type, suffix and every
 * S_*. */
#undef T
#undef SUF
#undef VEC
#undef VL
#undef S_LOAD
#undef S_STORE
#undef S_ZERO
#undef S_MASKLOAD
#undef S_ADD
#undef S_SET1
#undef S_TR
#undef S_EVEN2
#undef S_ODD2
#undef S_SPREAD
#undef S_IOTA
#undef S_ISET1
#undef S_IADD
#undef S_IGT
