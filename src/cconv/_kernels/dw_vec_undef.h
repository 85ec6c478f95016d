/* Undo one instantiation's vector macros (depthwise.c): the type, suffix and every V_*. */
#undef VL
#undef T
#undef VEC
#undef SFX
#undef DW_MASK
#undef V_LOAD
#undef V_LOADM
#undef V_STORE
#undef V_STOREM
#undef V_SET1
#undef V_ZERO
#undef V_FMA
#undef V_BCAST
#undef V_TRANSPOSE
#undef V_EVEN2
#undef V_KEEP
