"""Algorithm choice: "auto" is resolved here and only here."""
import enum
import functools
import math

import numpy as np

from . import _backward, _direct, _fft, _im2col, _winograd


class Algorithm(enum.Enum):
    DIRECT = "direct"
    IM2COL = "im2col"
    DEPTHWISE = "depthwise"  # direct depthwise kernels (groups == C), _depthwise.pyx
    WINOGRAD_F2 = "winograd_f2"  # F(2x2,3x3) / F(2,3), _winograd.pyx
    WINOGRAD_F4 = "winograd_f4"  # F(4x4,3x3) / F(4,3), _winograd.pyx
    FFT = "fft"  # products of spectra, _fft.pyx

    @property
    def winograd_m(self):
        """Output tile size m of a Winograd variant (None for the other algorithms)."""
        return {"winograd_f2": 2, "winograd_f4": 4}.get(self.value)


WINOGRAD_NAMES = ("winograd", "winograd_f2", "winograd_f4")


def choose_forward(spec, algorithm, cached=False, packed=False):
    """Return the Algorithm that will run `spec`. cached: the weights are already in
    Winograd form (cconv.winograd_weights), so the variant choice ignores their cost.
    packed: the weights are a PackedWeights, which keeps its Winograd transform once
    made (PackedWeights.winograd), so "auto" and "winograd" weigh Winograd without the
    transform, as for repeated calls (layers). The choice depends only on the problem
    and whether the weights are packed, never on earlier calls: the same call always
    gives the same bits."""
    if algorithm == "fft":
        return Algorithm.FFT
    if algorithm in WINOGRAD_NAMES:
        check_winograd(spec, algorithm)
        if algorithm == "winograd":  # packed weights keep the transform, as for "auto"
            return winograd_variant(spec, cached or packed)
        return Algorithm(algorithm)
    if algorithm == "depthwise":
        if not is_depthwise(spec):
            raise ValueError(
                f"{spec.fname}: algorithm='depthwise' needs groups == input channels "
                f"(one input channel per group), got groups={spec.groups} with "
                f"C={spec.C} channels ({spec.Cg} per group)"
            )
        return Algorithm.DEPTHWISE
    if algorithm == "direct" and is_depthwise(spec):
        # the dedicated depthwise kernels are the direct algorithm for these problems
        return Algorithm.DEPTHWISE
    if algorithm != "auto":
        return Algorithm(algorithm)
    return _auto_forward(spec, packed)


def winograd_limit(spec):
    """None if Winograd can run spec, else what it needs and what it got."""
    if spec.nd not in (1, 2):
        return f"1-D or 2-D convolution, got conv{spec.nd}d"
    what = "a 3x3 kernel" if spec.nd == 2 else "a 3-tap kernel"
    need = f"{what} with stride 1 and dilation 1"
    if any(k != 3 for k in spec.kernel):
        return f"{need}, got kernel {spec.kernel}"
    if any(s != 1 for s in spec.stride):
        return f"{need}, got stride {spec.stride}"
    if any(d != 1 for d in spec.dilation):
        return f"{need}, got dilation {spec.dilation}"
    return None


def check_winograd(spec, algorithm="winograd"):
    limit = winograd_limit(spec)
    if limit is not None:
        raise ValueError(f"{spec.fname}: algorithm={algorithm!r} needs {limit}")


def _tiles(spec, m):
    t = 1
    for o in spec.out_size:
        t *= -(-o // m)
    return t


# Cost model (units: one multiply-accumulate of im2col's GEMM, ~0.02 ns on the AVX-512
# EPYC, 1 thread: 3x3 256@14's 116M MACs in 2.3-2.9 ms), fitted to 1-thread float32
# timings of 13 shapes x both variants x cached / one-shot weights x both layouts
# (README "Winograd"); the weight-stream, weight-transform and transpose terms
# re-measured after the fused / vectorised weight transform, against the 2-thread
# Winograd / im2col ratios of the ResNet 3x3 layers. Both layouts run the channels-last
# kernel; channels-first adds two transposes.
#   GEMM:              N * tiles * T * Cg * Og * G MACs, at WINO_GEMM_EFF x im2col's rate
#   tile transforms:   N * tiles * T * (C + O) elements, WINO_TILE_COST[m] each
#   weight streaming:  T * Cg * O elements per tile block (every block reads them all),
#                      WINO_STREAM_COST each, WINO_STREAM_DRAM_COST beyond 12 MB (DRAM);
#                      kept (cached) weights beyond 12 MB: WINO_KEPT_STREAM_DRAM_COST
#   weight transform:  T * Cg * O elements, WINO_WEIGHT_COST each plus one more stream
#                      (written, then read by the GEMM); 0 when cached. Where the kernel
#                      fuses the transform into its items (_winograd.fuses_weights) there
#                      are no weight streams: WINO_FUSED_COST per element instead (1
#                      thread, one-shot minus cached, 12 shapes: 16-38 channels-last,
#                      24-66 channels-first)
#   transposes:        N * (C * H * W + O * OH * OW) elements (channels-first only)
WINO_GEMM_EFF = 1.1
WINO_TILE_COST = {2: 15.0, 4: 24.0}
WINO_STREAM_COST = 8.0
WINO_STREAM_DRAM_COST = 40.0
# Kept transformed weights are only read (no transform writes them first), and the GEMM
# streams them at about the cached-weight rate even from DRAM: cold measurements (4
# rotating weight sets, 2 threads, both layouts, 11 shapes from 512@7 batch 1 to 512@28)
# of kept F(2x2) / F(4x4) against packed im2col fit 6 per element (log rms 0.15), where
# 40 predicted F(2x2) at 512@7 batch 1 at 2.2x im2col against 0.63-0.79x measured.
WINO_KEPT_STREAM_DRAM_COST = 6.0
WINO_WEIGHT_COST = {False: 12.0, True: 10.0}   # weights channels_last -> cost per element
WINO_FUSED_COST = {False: 35.0, True: 28.0}
WINO_TRANSPOSE_COST = 8.0
WINO_MARGIN = 0.9   # auto picks Winograd only when predicted <= 0.9 x im2col
_WINO_BLOCK_BYTES = 3 * 1024 * 1024


def _wino_tile_blocks(tiles, Cg, Og, T, itemsize=4):
    """Tile blocks of the kernel's blocking (_winograd.blocking, 1 thread)."""
    per_tile = T * (Cg + Og) * itemsize
    if T * Cg * Og * itemsize > tiles * per_tile:  # weight-heavy: one block
        return 1
    nbmax = max(12, min(96, _WINO_BLOCK_BYTES // max(per_tile, 1) // 12 * 12))
    return -(-tiles // nbmax)


def winograd_cost(spec, m, cached=False):
    """Predicted cost of Winograd F(m, 3) for spec, in im2col GEMM MACs (model above)."""
    T = (m + 2) ** spec.nd
    tiles = spec.N * _tiles(spec, m)
    weights = T * spec.Cg * spec.O
    # streaming costs per byte: float64 weights cost twice float32's per element (the
    # GEMM and transform terms are in units of the dtype's own MAC rate already)
    big = weights * spec.dtype.itemsize > 12 << 20
    scale = spec.dtype.itemsize / 4
    stream = (WINO_STREAM_DRAM_COST if big else WINO_STREAM_COST) * scale
    # the tile blocks' reads of the transformed weights; kept ones were not just written
    read = WINO_KEPT_STREAM_DRAM_COST * scale if big and cached else stream
    cost = tiles * T * spec.Cg * spec.O / WINO_GEMM_EFF
    cost += tiles * T * (spec.C + spec.O) * WINO_TILE_COST[m]
    blocks = _wino_tile_blocks(tiles, spec.Cg, spec.O // spec.groups, T, spec.dtype.itemsize)
    if not cached and _winograd.fuses_weights(tiles, blocks, T, spec.Cg, spec.O,
                                              spec.dtype.itemsize,
                                              _winograd.tile_shape(spec.dtype)[1]):
        cost += weights * WINO_FUSED_COST[spec.channels_last]
    else:
        cost += weights * read * blocks
        if not cached:
            cost += weights * (WINO_WEIGHT_COST[spec.channels_last] + stream)
    if not spec.channels_last:
        cost += spec.N * (spec.C * math.prod(spec.in_size)
                          + spec.O * math.prod(spec.out_size)) * WINO_TRANSPOSE_COST
    return cost


def winograd_variant(spec, cached=False):
    """The cheaper of F(4x4,3x3) and F(2x2,3x3) under the cost model: F(4x4) on most
    images; F(2x2) where most of a 4x4 tile would be wasted (tiny images) or the 36
    transformed weight matrices cost more than the work they save (many channels on a
    small image). Both meet the float32 accuracy bound (<= 1e-4), so accuracy never
    forces F(2x2)."""
    c4 = winograd_cost(spec, 4, cached)
    c2 = winograd_cost(spec, 2, cached)
    return Algorithm.WINOGRAD_F4 if c4 <= c2 else Algorithm.WINOGRAD_F2


def _winograd_pays(spec, cached=False):
    """Auto: Winograd where its predicted cost beats im2col by the margin (cached: the
    transformed weights are kept, see choose_forward)."""
    if winograd_limit(spec) is not None or spec.groups > 1 and spec.Cg < 16:
        return None
    v = winograd_variant(spec, cached)
    if winograd_cost(spec, v.winograd_m, cached) <= WINO_MARGIN * im2col_cost(spec):
        return v
    return None


# Channels-last im2col with fewer than 16 channels per group builds row blocks instead
# of reading the input in place, and ran at about a fifth of its usual rate (cifar_b1,
# NHWC, 2 threads: 53 GFLOP/s against 250-280 on the 3x3 layers with >= 32 channels).
IM2COL_FEW_CHANNELS_EFF = 0.25


# Channels-first pixel rows (_im2col.pixrow_path) against the padded-grid panels, 1
# thread, float32, ms: 3x3 512@7 3.89 / 5.15, 256@14 2.70 / 3.15, 128@28 2.25 / 2.56,
# 64@56 2.32 / 2.91: 0.83-0.97 of a plain MAC each (no cols to pack). 0.8 made "auto" take
# im2col over F(4x4) on CIFAR 32->64 16x16 batch 16 (0.79 against 0.51 ms).
IM2COL_PIXROW_RATE = 0.9


def nchw_pixrow(spec):
    """Channels-first im2col on the pixel-row kernels (output pixels of a row as the
    GEMM's M dimension, _im2col.pixrow_path)."""
    if spec.channels_last:
        return False
    return _im2col.pixrow_path(spec.as3d(spec.out_size, 1), spec.as3d(spec.kernel, 1),
                               spec.as3d(spec.stride, 1), spec.as3d(spec.dilation, 1),
                               spec.Cg, spec.O // spec.groups, spec.dtype)


def im2col_cost(spec):
    """Predicted cost of im2col in GEMM MACs (same unit as winograd_cost). Channels-first
    im2col computes the output on the padded grid (the columns between output rows are
    computed and dropped), so its cost grows by the grid's waste: 1.22x on 8x8 images
    with a 3x3 kernel. Measured F(4x4) / im2col, NCHW, 1 thread (batch, C, O, size):
    (32, 64, 128, 8) 0.41, (16, 128, 128, 8) 0.66, (32, 64, 64, 16) 0.88, (32, 64, 32, 16)
    0.86, (1, 128, 128, 28) 0.78, (1, 64, 64, 56) 1.16, (1, 256, 256, 14) 3.7."""
    if spec.channels_last and spec.Cg < 16:
        return spec.macs / IM2COL_FEW_CHANNELS_EFF
    if spec.channels_last or _skip_pays_via(spec):
        # taps that read only padding in a whole tile are skipped
        return spec.macs * pad_skip_exec(spec)
    if nchw_pixrow(spec):
        Og = spec.O // spec.groups
        return spec.macs * _im2col.panel_cols(Og, spec.dtype) / Og * IM2COL_PIXROW_RATE
    if not spec.channels_last:
        od, oh, ow = spec.as3d(spec.out_size, 1)
        k = spec.as3d(spec.kernel, 1)
        d = spec.as3d(spec.dilation, 1)
        s = spec.as3d(spec.stride, 1)
        hp = oh + (k[1] - 1) * d[1] // s[1]
        wp = ow + (k[2] - 1) * d[2] // s[2]
        P = od * oh * ow
        grid = ((od - 1) * hp + oh - 1) * wp + ow
        if P and grid <= 1.5 * P:  # the padded-grid path (_im2col._virtual_waste)
            return spec.macs * grid / P
    return float(spec.macs)


# Channels-first im2col works image by image: on small images its tiles are mostly
# empty, while the channels-last kernel blocks pixels over the whole batch and wins even
# with the two transposes. Measured (via channels-last / channels-first, 1 thread,
# float32; batch, C, O, size, kernel): (64, 512, 256, 4, 2) 0.75, (16, 128, 128, 8, 3)
# 0.73, (32, 64, 128, 8, 3) 0.75; but (8, 512, 512, 7, 3) 1.06, (1, 512, 512, 7, 3) 2.3,
# (32, 64, 64, 16, 3) 1.16, (1, 1024, 256, 14, 1) 1.9. The forward pass takes this route
# only where the pixel-row kernels do not run (nchw_forward_via_nhwc): against those,
# via channels-last / channels-first was 9.0 / 8.3 ms (64, 512, 256, 4, 2), 1.92 / 1.47
# (32, 64, 128, 8, 3), 6.57 / 5.93 (64, 256, 256, 4, 3), 3.67 / 3.34 (16, 256, 256, 6, 3).
NCHW_VIA_NHWC_MAX_PIXELS = 64
NCHW_VIA_NHWC_MIN_ROWS = 512   # batch x output pixels


# The routes through the other layout copy the input and the output (transposes): at
# most this many bytes of copies, so that a huge tensor runs in place instead of
# doubling its memory (an 8 GiB channels-last input, groups == C, ran out of 24 GiB).
VIA_MAX_COPY_BYTES = 1 << 30


GW_VIA_WEIGHT_PER_PIXEL = 2048
GW_VIA_STRIDED_MAX_CG = 64


def copies_fit(spec):
    """Whether transposed copies of the spec's input and output fit VIA_MAX_COPY_BYTES."""
    n = spec.N * (spec.C * math.prod(spec.in_size) + spec.O * math.prod(spec.out_size))
    return n * spec.dtype.itemsize <= VIA_MAX_COPY_BYTES


def nchw_via_nhwc(spec):
    """Run a channels-first im2col problem through the channels-last kernel: small
    images (at most 64 output pixels), a batch of at least 512 output pixels, and at
    least 16 channels per group (the channels-last kernel that reads rows in place);
    not when the transposed copies would exceed VIA_MAX_COPY_BYTES."""
    if spec.channels_last or spec.Cg < 16 or not copies_fit(spec):
        return False
    P = math.prod(spec.out_size)
    return P <= NCHW_VIA_NHWC_MAX_PIXELS and spec.N * P >= NCHW_VIA_NHWC_MIN_ROWS


# Channels-first depthwise problems with short output rows run the channels-last
# kernels (channels as lanes) between transposes: the channels-first kernels vectorise
# along W. Measured 2 threads, float32, 5 interleaved rounds, via / channels-first:
# 7x7 outputs batch 8: 256 ch 3x3 0.66, 512 ch 5x5 0.50; 3-D 6^3 5x5x5 128 ch batch 8
# 0.66, 12^3 3x3x3 64 ch batch 2 0.51; but batch 1 960 ch at 7x7 1.38 (47k outputs:
# the transposes and the slower Python path), 14x14 batch 8 128 ch 5x5 1.16, batch 1
# at 14x14-28x28 2-4.
# Kernels with depth (3-D, KD > 1) go further: the channels-first kernel copies every
# kernel plane's rows into its padded scratch per output plane, the channels-last 3x3x3
# tile keeps its sums in registers over the planes. Via / channels-first, 2 threads,
# float32, 5 interleaved rounds (N, C, D, H = W, kernel, stride): output rows of 14
# (1, 192, 16, 14, 3) 0.63, (8, 64, 8, 14, 3) 0.32, (2, 128, 8, 14, 5) 0.46, (2, 96, 8,
# 28, 3, s2) 0.32; 16-24: (1, 64, 8, 16) 0.61, (4, 64, 4, 16) 0.44, (1, 64, 16, 18) 0.46,
# (2, 96, 8, 20) 0.45, (1, 128, 8, 24) 0.54; but 28: (1, 96, 16, 28) 1.11, 32: 1.25, 56:
# 1.36, (1, 64, 8, 28, 7) 1.02.
NCHW_DW_VIA_MAX_W = 12
NCHW_DW_VIA_MAX_W_3D = 24
NCHW_DW_VIA_MIN_SIZE = 65536


def nchw_dw_via_max_w(spec):
    """The widest output rows that nchw_depthwise_via_nhwc sends through channels-last."""
    if len(spec.kernel) == 3 and spec.kernel[0] > 1:
        return NCHW_DW_VIA_MAX_W_3D
    return NCHW_DW_VIA_MAX_W


def nchw_depthwise_via_nhwc(spec):
    """A channels-first depthwise forward (groups == C > 1) that runs the channels-last
    kernels between threaded transposes (x and the weight in, the output back): output
    rows of at most nchw_dw_via_max_w pixels, at least NCHW_DW_VIA_MIN_SIZE output
    elements, and the copies within VIA_MAX_COPY_BYTES. Both layouts' kernels have the
    same arithmetic (depthwise.h): the same bits."""
    return (not spec.channels_last and is_depthwise(spec) and spec.groups > 1
            and spec.out_size[-1] <= nchw_dw_via_max_w(spec)
            and spec.N * spec.O * math.prod(spec.out_size) >= NCHW_DW_VIA_MIN_SIZE
            and copies_fit(spec))


# 3-D weight gradients with at most 16 outputs (gwdot's territory channels-first: it
# computes every tap, padding included) run channels-last too, except at most 8 outputs
# with 3^3 taps or fewer. Measured 2 threads, 5 interleaved rounds, via / gwdot, float32
# (float64) (N, C, O, kernel, size): (2, 64, 16, 7^3, 6^3) 0.22 (0.37), 5^3 0.27 (0.51),
# 3^3 0.47 (0.73); (1, 32, 16, 7^3, 12^3) 0.50 (0.46); (4, 16, 16, 5^3, 10^3) 0.53 (0.46);
# (2, 64, 16, 3^3, 16^3) 0.97 (1.01); (1, 64, 16, 7^3, 16^3) 0.74 (0.62); but (2, 64, 8,
# 3^3, 12^3) 1.45 (0.64) and (1, 128, 4, 3^3, 16^3) 2.90 (1.58).
GW_VIA_3D_MAX_O = 16
GW_VIA_3D_FEW_O = 8


def nchw_grad_weight_via_nhwc(spec):
    """A channels-first weight gradient that runs channels-last between transposes (x
    and grad_out in, the weight back): one group, at least 16 input and 32 output
    channels, a spatial kernel, stride 1 (or any stride with at most 64 input
    channels), and at most GW_VIA_WEIGHT_PER_PIXEL weight
    elements per output pixel of the batch (the weight's transpose back is then small).
    There the channels-last reduction reads x in place (gwrows kernels) where the
    channels-first one packs im2col^T panels or runs gwdot. Measured 2 threads, float32,
    interleaved rounds, via / channels-first: 3x3 32->64 at 16x16 b16 0.75, 64@32 b16
    0.73, 64@56 b8 0.62, 128@28 b8 0.76-0.85, 256@14 b8 0.73-0.90, b2 0.83, 5x5 32->64 at
    28x28 0.50-0.57, dilation 2 0.61, batch 1: 64@56 0.65, 128@28 0.82; 256@14 batch 1
    0.99 and 512@7 batch 8 0.95 (weight / pixels 3000 and 6000), 512@7 batch 1 2.3,
    1x1 1.5-2.0, 4 groups 1.34, 16 output channels 1.11, 8 input channels 1.01, so those
    stay. Strided, only up to GW_VIA_STRIDED_MAX_CG input channels (7 interleaved
    rounds, after the channels-last kernel read x in place): 3x3 stride 2 32->64 at
    32x32 b16 0.68, 64->128 at 56x56 b8 0.86, b1 0.99, 4x4 stride 2 64->128 at 32x32 b8
    0.75; 128->128 b1 0.93 but 128->256 at 56x56 b8 1.01 and 256->512 at 28x28 b4
    1.09. Its sums are plain running sums over the batch's pixels (gwdot's lane sums
    were about 10x closer to float64 on 25088 pixels: 7e-6 against 4e-7 largest relative
    error; the GEMM path's own)."""
    if spec.channels_last or spec.groups != 1 or spec.Cg < 16:
        return False
    taps = math.prod(spec.kernel)
    if (spec.nd == 3 and spec.O <= GW_VIA_3D_MAX_O and taps > 1
            and all(s == 1 for s in spec.stride)):
        return (spec.O > GW_VIA_3D_FEW_O or taps > 27) and copies_fit(spec)
    if spec.O < 32:
        return False
    if taps == 1 or (any(s != 1 for s in spec.stride) and spec.Cg > GW_VIA_STRIDED_MAX_CG):
        return False
    pixels = spec.N * math.prod(spec.out_size)
    return spec.O * spec.Cg * taps <= GW_VIA_WEIGHT_PER_PIXEL * pixels and copies_fit(spec)


def pad_skip_exec(spec):
    """Share of the channels-last im2col tile work left once the taps that read only
    zero padding are skipped (_im2col.skip_exec_fraction; 1.0 where nothing is, as
    with the other padding modes: the kernels get their input padded)."""
    if spec.padding_mode != "zeros":
        return 1.0
    pads = tuple(b for b, _ in spec.pads)
    return _im2col.skip_exec_fraction(
        spec.as3d(spec.in_size, 1), spec.as3d(spec.out_size, 1), spec.as3d(spec.kernel, 1),
        spec.as3d(spec.stride, 1), (0,) * (3 - spec.nd) + pads, spec.as3d(spec.dilation, 1),
        spec.N, spec.dtype)


# The channels-first forward im2col runs channels-last between transposes where the
# channels-last kernels' skipped padding taps save more MACs than this many per copied
# element (input, output and weights). Measured 2 threads, float32, 5 interleaved
# rounds, via / in place: ASPP-style 3x3 512 -> 256 at 33x33 batch 2, dilation 24 0.43
# (tile work left 0.36), 12 0.76 (0.71), 6 0.88-0.93 (0.88); but 7x7 dilation 2 256 ->
# 128 at 7x7 batch 2 1.40 (0.57 left, and 6.4 MB of weights to transpose per call).
NCHW_VIA_SKIP_COPY_MACS = 60.0


def nchw_forward_via_nhwc(spec):
    """nchw_via_nhwc for the forward im2col, where the pixel-row kernels do not run, or
    run only thanks to the AVX-512 half-width tiles (few output channels per group): on
    these small images the rows are short. 2 threads, 9 interleaved rounds, via / pixel
    rows, float32, Og = 16: 64 -> 16 at 4x4 batch 64 0.64, at 6x6 0.98, at 8x8 0.96.
    Also where the channels-last kernels skip enough of the padding taps
    (NCHW_VIA_SKIP_COPY_MACS)."""
    if not nchw_via_nhwc(spec):
        return _skip_pays_via(spec)
    Og = spec.O // spec.groups
    nr = _im2col.tile_shape(spec.dtype)[1]
    return not nchw_pixrow(spec) or (Og <= nr // 2 and _im2col.panel_cols(Og, spec.dtype) < nr)


def _skip_pays_via(spec):
    if spec.channels_last or spec.Cg < 16 or not copies_fit(spec):
        return False
    left = pad_skip_exec(spec)
    if left >= 1.0:
        return False
    copies = (spec.N * (spec.C * math.prod(spec.in_size) + spec.O * math.prod(spec.out_size))
              + spec.O * spec.Cg * math.prod(spec.kernel))
    return (1.0 - left) * spec.macs > NCHW_VIA_SKIP_COPY_MACS * copies


# Channels-first problems with at most this many input channels (one group, a spatial
# kernel: RGB / mono stems, 1-D signals, 3-D volumes) run on the grouped kernel with
# output columns as lanes (cconv_gconv_nchw as one group): im2col's GEMM there has
# K = C * taps and packs 3-wide rows. Measured 2 threads, 5 interleaved rounds, that
# kernel / im2col, float32 (float64): CIFAR 3->32 at 32^2 batch 16 0.64-0.71 (0.72);
# ResNet stem 7x7/2 3->64 at 224^2 batch 1 0.86, batch 8 1.03; 3x3/2 3->32 at 224^2
# 0.45; dilation 2 0.67 (0.70); 5x5 1->32 at 28^2 0.70; 4->64 at 64^2 0.72; 1-D k10/5
# 1->64 L=16000 0.78 (0.83); 3-D 1->16 at 32^3 0.57 (0.56), 4->32 stride 2 0.36 (0.59;
# 1 thread 1.16); 6 channels 0.84 (0.70), 8 channels 0.87-0.99 (0.95-1.05) and 1x1
# 4->32 0.76-0.81 (1.12), so those stay im2col. The same bits as im2col (both sum the
# taps (c, kd, kh, kw) from +0, then add the bias).
NCHW_FEW_CHANNELS_MAX_C = 4
# So do problems with few output channels (prediction heads, the last layer of an
# image-to-image network), where im2col's GEMM has M = O: at most this many outputs by
# itemsize. Measured the same way, 3x3 unless said: float32 O = 1-4 0.14-0.24 (64->1 at
# 128^2 batch 2 3.44 -> 0.77 ms; 64->1 at 512^2 70.6 -> 11.5 ms; 1 thread 0.14-0.28),
# O = 6-8 0.19-0.52 (2048->8 at 7^2 2.20 -> 0.42 ms; 1 thread 0.70-0.75); float64 O = 1-4
# 0.28-0.96, but O = 6-8 0.53-1.21; 4->16 with 64 inputs 0.73 (float64 1.08); 1x1
# few-output layers 0.48-1.53, so they stay im2col. On batches of small images im2col
# wins back (it blocks pixels over the whole batch; the kernel's rows are short):
# 512->4 batch 32 at 2^2-7^2 1.15-1.47, at 8^2 0.82 in one run and 1.31 in another, at
# 14^2 0.91-0.95; batch 1-8 at 2^2-14^2 0.11-0.83. So outputs narrower than 16 take it
# up to batch 8 only.
NCHW_FEW_OUTPUTS_MAX_O = {4: 8, 8: 4}
NCHW_FEW_OUTPUTS_MIN_OW = 16
NCHW_FEW_OUTPUTS_NARROW_MAX_N = 8


def _one_group_simd(spec):
    """What both one-group routes need: groups == 1, more than one tap, a SIMD path."""
    return (spec.groups == 1 and math.prod(spec.kernel) > 1
            and _im2col.isa_active() != "generic")


def _few_outputs(spec):
    """At most NCHW_FEW_OUTPUTS_MAX_O output channels for the spec's dtype."""
    return spec.O <= NCHW_FEW_OUTPUTS_MAX_O.get(spec.dtype.itemsize, 0)


def nchw_few_channels(spec):
    """A channels-first problem that "direct" and "auto" give to the grouped kernel
    with output columns as lanes, as one group: groups == 1, more than one tap, on a
    SIMD path, and at most NCHW_FEW_CHANNELS_MAX_C input channels or at most
    NCHW_FEW_OUTPUTS_MAX_O output channels (by itemsize; outputs at least
    NCHW_FEW_OUTPUTS_MIN_OW wide or a batch of at most NCHW_FEW_OUTPUTS_NARROW_MAX_N)."""
    if spec.channels_last or not _one_group_simd(spec):
        return False
    return spec.C <= NCHW_FEW_CHANNELS_MAX_C or (
        _few_outputs(spec) and (spec.out_size[-1] >= NCHW_FEW_OUTPUTS_MIN_OW
                                or spec.N <= NCHW_FEW_OUTPUTS_NARROW_MAX_N))


# Channels-last problems with few outputs take that kernel between transposes
# (nhwc_grouped_via_nchw): in place, im2col's channels-last tiles are 32 output channels
# wide, mostly empty. Measured 2 threads, float32, 5 interleaved rounds, via / in place:
# 64->1 and 64->3 at 128^2 batch 2 0.27-0.29 (4.4 -> 1.3 ms), 32->4 at 56^2 batch 4
# 0.35, 16 x 64->8 at 32^2 0.57; but on small images the transposes and short rows
# lose: 512->4 at 2^2-8^2 batch 8-32 1.18-2.12, at 14^2 0.86-1.12 (1024->4 at 14^2
# 0.62, 2048->8 at 7^2 0.67), so only outputs at least NHWC_FEW_OUTPUTS_MIN_OW wide.
NHWC_FEW_OUTPUTS_MIN_OW = 16


def nhwc_few_outputs(spec):
    """A channels-last problem that "direct" and "auto" run as nchw_few_channels' kernel
    between transposes (nhwc_grouped_via_nchw): one group, more than one tap, a SIMD
    path, at most NCHW_FEW_OUTPUTS_MAX_O outputs, outputs at least
    NHWC_FEW_OUTPUTS_MIN_OW wide, at least NHWC_GROUPED_VIA_MIN_SIZE input elements, the
    copies within VIA_MAX_COPY_BYTES."""
    return (spec.channels_last and _one_group_simd(spec) and _few_outputs(spec)
            and spec.out_size[-1] >= NHWC_FEW_OUTPUTS_MIN_OW
            and spec.N * spec.C * math.prod(spec.in_size) >= NHWC_GROUPED_VIA_MIN_SIZE
            and copies_fit(spec))


def grouped_direct(spec):
    """The direct algorithm on a grouped (not depthwise) problem runs the grouped
    kernels (depthwise.h: cconv_gconv, and cconv_gconv_nchw for channels-first groups of
    fewer than 8 output channels, see grouped_width_lanes); so does a channels-first
    problem with few input or output channels (nchw_few_channels), as one group, and a
    channels-last one with few outputs (nhwc_few_outputs), through channels-first."""
    return ((spec.groups > 1 and not is_depthwise(spec)) or nchw_few_channels(spec)
            or nhwc_few_outputs(spec))


def grouped_width_lanes(spec):
    """Which grouped kernel "direct" runs: channels-first problems with fewer than 8
    output channels per group take the one with output columns as SIMD lanes
    (cconv_gconv_nchw; a group's 4 channels would fill half a vector of the other), and
    so does one group of few channels (nchw_few_channels); the rest the one with
    a group's output channels as lanes (cconv_gconv). Both give the same bits.
    Measured, 2 threads, float32, NCHW, 3x3 (us, channel lanes vs column lanes): 128 ch
    g32 (4 per group) at 28x28 128 vs 81; 256 g32 at 14x14 77 vs 79; 512 g32 at 7x7 71
    vs 118; batch 8 of 256 g32 at 14x14 603 vs 627; 64 g2 at 56x56 772 vs 802; 1
    thread, 256 g32 stride 2 at 28x28 247 vs 264; as one group, 3 -> 32 at 32^2 batch
    16, time relative to im2col: 1.05 vs 0.71."""
    return not spec.channels_last and (spec.Og < 8 or spec.groups == 1)


# Channels-last grouped problems on the direct kernel with at most this many output
# channels per group run the channels-first kernel (output columns as lanes,
# cconv_gconv_nchw) between threaded transposes: the channels-last one fills only Og of
# a vector's lanes. Measured on the AVX-512 EPYC, 2 threads, float32, 7 interleaved
# rounds, via / channels-last (batch, C -> O, groups, kernel, size): Og = 1: 1 128 -> 32
# g32 3x3 at 28x28 0.61, 3-D 2 64 -> 16 g16 3x3x3 at 16^3 0.37, 3-D 4 256 -> 8 g8
# 5x5x5 at 16^3 0.43 (100 -> 43 ms); Og = 2: 8 256 -> 64 g32 at 14x14 0.68, 4 64 -> 32
# g16 at 56x56 0.46, stride 2 8 96 -> 48 g24 at 28x28 0.89, 1-D 8 64 -> 32 g16 L=1000
# 0.56; but 1 64 -> 64 g32 at 14x14 1.24 (33 -> 40 us: below NHWC_GROUPED_VIA_MIN_SIZE),
# and Og = 4 lost (2-D 5x5 1.06, 3-D 1.29).
NHWC_GROUPED_VIA_MAX_OG = 2
NHWC_GROUPED_VIA_MIN_SIZE = 32768   # input elements of the batch


def nhwc_grouped_via_nchw(spec):
    """A channels-last grouped (not depthwise) problem on the direct kernel with at most
    NHWC_GROUPED_VIA_MAX_OG output channels per group, at least
    NHWC_GROUPED_VIA_MIN_SIZE input elements, its copies within VIA_MAX_COPY_BYTES: x in
    and the output back through threaded transposes around the channels-first grouped
    kernel (the same bits: both kernels share the arithmetic, depthwise.h); and every
    problem of nhwc_few_outputs."""
    if nhwc_few_outputs(spec):
        return True
    return (spec.channels_last and grouped_direct(spec)
            and spec.O // spec.groups <= NHWC_GROUPED_VIA_MAX_OG
            and spec.N * spec.C * math.prod(spec.in_size) >= NHWC_GROUPED_VIA_MIN_SIZE
            and copies_fit(spec))


# Grouped problems with few channels per group: the direct grouped kernel against
# im2col (a GEMM per group with K = Cg * taps), NCHW, 2 threads, float32, 3x3:
# 256 ch g32 at 14x14 0.111 vs 0.213 ms, 128 g32 at 28x28 0.117 vs 0.244, 512 g32 at
# 7x7 0.161 vs 0.230, batch 8 of 256 g32 at 14x14 0.845 vs 1.125, 64 g8 at 56x56 0.292
# vs 0.445, batch 16 of 64 -> 128 g4 (16 per group) at 16x16 1.167 vs 1.348.
GROUPED_DIRECT_MAX_CG = 16
# Channels-last (cconv_gconv: output channels as lanes, weights read in place),
# same setting, direct vs im2col (ms): 256 ch g16 at 14x14 0.118 vs 0.379, g8 (32 per
# group) 0.188 vs 0.306, 128 g4 at 28x28 0.400 vs 0.482, 512 g16 at 7x7 0.118 vs 0.164,
# batch 8 of 256 g8 at 14x14 1.43 vs 1.89, 64 g2 at 56x56 0.66 vs 1.24; with 64 per
# group mixed (256 g4 at 14x14 1.28 vs 1.43 for batch 4, 512 g8 0.85 vs 0.74).
GROUPED_DIRECT_MAX_CG_LAST = 32
# Groups with at most 8 output channels take the direct kernel up to 64 channels per
# group in both layouts (the GEMM per group fills few of its tile's rows / columns).
# Measured 2 threads, float32, 8 rounds rotating which runs first after PyTorch, direct
# / im2col, channels-first: Og 4, Cg 32: 7x7 at 28^2 batch 1 0.25, 3x3 batch 4 0.36;
# Og 8, Cg 32: 0.61-0.71; Og 8, Cg 64 at 28^2 batch 4 0.67; but Og 16 with Cg 48 1.13,
# Og 32 1.08-1.35, Og 8 with Cg 128 (5x5 stride 2) 1.11; channels-last: Og 4-8, Cg 64
# 0.61-0.63, Og 16 with Cg 48-64 1.03-1.09.
GROUPED_DIRECT_MAX_CG_FEW_OUT = 64
GROUPED_DIRECT_FEW_OUT = 8
GROUPED_DIRECT_MIN_EXEC = 0.8   # pad_skip_exec from which those wider groups go direct


def _is_patch(spec):
    """Kernel equal to the stride in every dimension (more than one tap), no padding:
    patches that tile the input (without overlap where the dilation is 1)."""
    return (math.prod(spec.kernel) > 1 and not any(b or a for b, a in spec.pads)
            and all(k == s for k, s in zip(spec.kernel, spec.stride)))


# Channels-first 3-D few-output layers (nchw_few_channels by NCHW_FEW_OUTPUTS_MAX_O) with
# output rows narrower than NCHW_FEW_OUTPUTS_MIN_OW: the kernel's lanes run mostly empty
# and strided or long tap loops lose to im2col. Measured 2 threads, float32, 7
# interleaved rounds, im2col / the grouped kernel (N, C, O, kernel, stride, size):
# (4, 128, 8, 7^3, 1, 6^3) 0.37, (2, 256, 8, 3^3, 2, 16^3: rows of 8) 0.60, (2, 32, 8, 5^3,
# 1, 12^3) 1.02; with 3^3 taps at stride 1 the kernel wins: (1, 64, 4, 8^3) 1.39, (8, 16,
# 4, 8^3) 1.17, (1, 256, 1, 12^3) 1.65, (1, 32, 2, dilation 2, 12^3) 1.90, (1, 8, 8, 12^3)
# 2.07, (2, 128, 8, 12^3) 0.99. float64 (at most 4 outputs) alike: (1, 64, 4, 8^3) 0.76,
# (8, 16, 4) 1.14, (1, 32, 2) 1.23.
NARROW_3D_MAX_TAPS = 27
# Channels-first patch convolutions (_is_patch) with few input channels and output rows
# narrower than NCHW_FEW_OUTPUTS_MIN_OW stay im2col. Measured 2 threads, float32, 7
# interleaved rounds, batch 8 at 224^2, im2col / the grouped kernel: ViT 16x16/16 3 -> 768
# (rows of 14) 0.74, 1 -> 768 0.78, batch 1 0.84; with wider rows it is even: 8x8/8
# 3 -> 256 (28) 0.98, ConvNeXt 4x4/4 3 -> 96 (56) 1.07, Swin 3 -> 128 1.02.
def grouped_direct_pays(spec):
    """Whether "auto" gives a grouped (not depthwise) problem to the grouped direct
    kernels: few channels per group (GROUPED_DIRECT_MAX_CG channels-first,
    GROUPED_DIRECT_MAX_CG_LAST channels-last; up to GROUPED_DIRECT_MAX_CG_FEW_OUT in
    either with at most GROUPED_DIRECT_FEW_OUT outputs per group); and the one-group
    problems of nchw_few_channels, whatever their input channels."""
    if not grouped_direct(spec):
        return False
    if spec.groups == 1:
        # nchw_few_channels or nhwc_few_outputs (the one-group problems), except
        # channels-first patch convolutions with output rows narrower than
        # NCHW_FEW_OUTPUTS_MIN_OW (its lanes): ViT's 16x16 / 16 stem, where im2col's GEMM
        # (K = C * 256, M = O = 768) wins
        if spec.channels_last or spec.out_size[-1] >= NCHW_FEW_OUTPUTS_MIN_OW:
            return True
        if _is_patch(spec):
            return False
        # 3-D few-output layers with narrow rows: only stride 1 and at most 27 taps
        return not (spec.nd == 3 and spec.C > NCHW_FEW_CHANNELS_MAX_C
                    and (any(s > 1 for s in spec.stride)
                         or math.prod(spec.kernel) > NARROW_3D_MAX_TAPS))
    if spec.Cg <= (GROUPED_DIRECT_MAX_CG_LAST if spec.channels_last else GROUPED_DIRECT_MAX_CG):
        return True
    # the wider groups only where im2col's padding-tap skipping would save little (the
    # direct kernel computes every tap): 3-D 7x7x7 dilation 2 at 12^3, 256 -> 16 in 4
    # groups, where im2col runs 0.4-0.7x the direct kernel's time, stays im2col
    return (spec.Cg <= GROUPED_DIRECT_MAX_CG_FEW_OUT
            and spec.O // spec.groups <= GROUPED_DIRECT_FEW_OUT
            and pad_skip_exec(spec) >= GROUPED_DIRECT_MIN_EXEC)


NHWC_VIA_NCHW_MIN_PIXELS = 1024  # batch x output pixels (dense problems below)


def pointwise_groups(spec):
    """A channels-last grouped 1x1 problem (stride 1, no padding, under 16 channels per
    group, or 16 with at least 32 outputs per group) that im2col runs as one in-place
    GEMM per group and block of pixels (_im2col._pointwise_groups; the channel counts
    are its rule, _im2col.pointwise_groups_channels)."""
    return (spec.channels_last
            and _im2col.pointwise_groups_channels(spec.groups, spec.Cg, spec.O // spec.groups)
            and all(k == 1 for k in spec.kernel) and all(s == 1 for s in spec.stride)
            and not any(b or a for b, a in spec.pads))


def pointwise_few_outputs(spec):
    """A channels-last dense 1x1 problem (stride 1, no padding) with at most
    _im2col.PWFEW_MAX_O[itemsize] outputs (float32 8, float64 3) on a SIMD path: im2col
    runs it in place, x read once against the few output accumulators
    (_kernels/pwfew.h; the GEMM's bits), not through channels-first (nhwc_via_nchw).
    Against the routes it had, 2 threads, 5 interleaved rounds, new / old: float32 64 ->
    1, 3, 8 at 128^2 batch 2 0.23, 0.32, 0.53 (0.80 -> 0.19 ms for one output; PyTorch
    0.36), 32 -> 2 at 64^2 batch 8 0.30, 256 -> 1 at 64^2 0.41, 512 -> 1 at 32^2 0.37,
    256 -> 8 0.92, 1024 -> 4 at 14^2 0.97; float64 64 -> 1 0.38, 256 -> 1 0.65, 512 ->
    1 0.44 (with 4-8 outputs float64 lost: 1.16-1.42)."""
    return (spec.channels_last and spec.groups == 1 and _im2col.PWFEW
            and spec.O <= _im2col.PWFEW_MAX_O[spec.dtype.itemsize]
            and _im2col.isa_active() != "generic"
            and all(k == 1 for k in spec.kernel) and all(s == 1 for s in spec.stride)
            and not any(b or a for b, a in spec.pads))


def grouped_pointwise_im2col(spec):
    """A channels-last grouped 1x1 problem without padding that "auto" gives im2col
    rather than the grouped direct kernel, whose tiles suit spatial kernels: strided
    (in place, or under 16 channels per group over functional.subsampled_input), or at
    stride 1 with the GEMMs per group (pointwise_groups) and at least 16 output channels
    in at most 16 groups. Measured 2 threads, float32, 9 interleaved rounds, im2col /
    direct: batch 8 16 -> 256 g2 at 56^2 0.54, 64 -> 256 g4 at 28^2 0.57, 32 -> 64 g4 at
    56^2 0.81, 128 -> 256 g16 0.87; strided 2x2: 64 -> 128 g4 at 56^2 0.50, 96 -> 96 g4
    0.55, 256 -> 8 g8 0.39, 256 -> 64 g8 1.03; the direct kernel stays for 8 output
    channels per group (32 -> 64 g8 1.86), 32 groups (256 -> 512 at 14^2 1.07) and 16
    channels with 16 outputs per group (the tile kernels there: even)."""
    Og = spec.O // spec.groups
    if not (spec.channels_last and grouped_direct(spec)
            and all(k == 1 for k in spec.kernel) and not any(b or a for b, a in spec.pads)):
        return False
    if any(s != 1 for s in spec.stride):
        return True
    # stride 1: where im2col runs the GEMMs per group (pointwise_groups; 16 channels
    # with 16 outputs per group run its tile kernels instead, even with direct)
    return Og >= 16 and spec.groups <= 16 and pointwise_groups(spec)


def nhwc_via_nchw(spec):
    """Run a channels-last im2col problem through the channels-first kernel: grouped
    convolutions with fewer than 16 channels per group (the channels-last kernel builds
    row blocks for them; measured 2-3x slower than channels-first plus the transposes),
    and stride-1 problems with few output channels per group (the channels-last tiles
    are NR = 32 output channels wide, mostly empty there; the channels-first tiles put
    output channels on their MR = 12 rows). Measured im2col, 2 threads, float32, via
    channels-first / channels-last: 2-D batch 4 at 56x56, 3x3 and 7x7: 0.22-0.76 for
    Og <= 8 with 8 <= Cg <= 64, 0.36-0.95 for Og = 16 with Cg <= 32 (Cg = 128: 0.76 at
    Og = 8, 1.02 at 16); 3-D batch 2 at 16^3, 3x3x3: 0.28-0.76 for Og <= 16, Cg <= 32,
    0.57-0.79 for Og <= 8 up to Cg = 128; 1-D batch 8, L = 2000: 0.46-0.97 for Og <= 8,
    Cg 8-64, but 0.72-1.13 at Og = 16. Strided problems lost (2-D 3x3 stride 2 with
    Cg >= 32: 0.9-2.4x; 3-D: 1.3-3x) and stay channels-last, as do problems whose copies
    would exceed VIA_MAX_COPY_BYTES, and 3-D kernels larger
    than 3x3x3 (5x5x5 and 7x7x7, Cg 8-64, Og 4-16: 1.1-2.4x slower through
    channels-first). Small problems lose the transposes' fixed cost: below about 1000
    output pixels (batch x pixels; 3x3, Cg 24-64, Og 8-16) via channels-first was
    1.2-1.9x slower (49 pixels: 0.045 -> 0.078 ms), from 1568 on 0.49-0.86.
    Those figures predate the AVX-512 half-width tiles (NR/2 columns, gemm.c): with
    them a panel of more than NR/4 output channels is at least half used in place, and
    with at least 16 channels per group (A rows read in place) channels-last stays.
    Measured on the AVX-512 EPYC, 2 threads, 7 interleaved rounds, in place / via:
    float32 Og = 16, Cg 16-32: 0.50-0.69 (3-D 8 x 16 -> 16 at 16^3: 5.2 -> 2.9 ms), Og =
    12: 0.90-0.94; float64 Og = 8, Cg 16-64: 0.45-0.57, Og = 16: 0.91-0.96. Og <= NR/4
    (float32 4-8: 0.85-1.07) and Cg = 8 (0.91-1.11) keep the route."""
    if not spec.channels_last or not copies_fit(spec):
        return False
    if spec.groups > 1 and pointwise_groups(spec):
        return False
    if pointwise_few_outputs(spec):
        return False
    if spec.groups > 1 and spec.Cg < 16:
        return True
    Og = spec.O // spec.groups
    if any(s != 1 for s in spec.stride) or spec.Cg < 4:
        return False
    if spec.nd == 3 and math.prod(spec.kernel) > 27:
        return False
    if spec.N * math.prod(spec.out_size) < NHWC_VIA_NCHW_MIN_PIXELS:
        return False
    if spec.Cg >= 16 and _im2col.isa_active() == "avx512" and \
            Og > _im2col.tile_shape(spec.dtype)[1] // 4:
        return False
    return (Og <= 8 and spec.Cg <= 64) or (Og <= 16 and spec.Cg <= 32 and spec.nd >= 2)


def nhwc_grad_weight_via_nchw(spec):
    """Whether a channels-last weight gradient runs channels-first between transposes:
    grouped problems with fewer than 16 input channels per group (not depthwise) and
    dense ones with at most 4, where the channels-last GEMM reduction gathers short
    channel runs (measured 2 threads, float32, via / in place: groups 8 of 4-8 channels
    0.30-0.46; 3 channels 0.46-0.93; 8-12 channels 0.95-1.57, so those stay).
    Fewer channels per group than the tile's rows (``_backward.gw_cols_max_cg()``, 8 on
    AVX-512) run in place through im2col rows of (tap, channel) pairs (_gw_cols), which
    beat the route where each group has many outputs. In place / via, 2 threads, float32,
    8-10 interleaved rounds whose order rotates (PyTorch's threads slow the next call):
    dense 2-4 channels 0.46-0.63 with 64 outputs (3x3 3 -> 64 at 224 batch 8, where the
    copies do not even fit, 38.8 -> 12.5 ms; the ResNet stem 7x7/2 0.54), 0.75-1.03 with
    32, 1.41-1.57 with 16-24; one channel 0.60-0.83 with 64 (wav2vec 2.0's first layer 1
    -> 512 k10/5 0.92), 1.07-1.47 with 32, 1.5-2.7 with 16; groups of 3-6 channels
    0.70-0.96 with 64-96 outputs each, 1.04-1.86 with 24-48. So the route stays below 32
    outputs (dense), up to 32 (one channel) and below 64 per group (grouped); and for
    groups of 8-15 channels with fewer than 16 outputs (below). Dense 1x1 layers never
    take the route."""
    if spec.groups == 1 and math.prod(spec.kernel) == 1:
        return False
    if not (spec.channels_last and (1 < spec.Cg < 16 or spec.groups == 1)
            and (spec.groups > 1 or spec.Cg <= 4) and copies_fit(spec)):
        return False
    Og = spec.O // spec.groups
    if spec.Cg < _backward.gw_cols_max_cg():
        if spec.groups > 1:
            return Og < 64
        return Og <= 32 if spec.Cg == 1 else Og < 32
    # groups of 8-15 channels: in place (channel blocks of 8) from 16 outputs per group
    # (in place / via, rotated order: 16 -> 256 g2 1x1 at 56^2 0.48, 32 -> 128 g4 0.60,
    # 24 -> 240 g2 0.63-0.80, 64 -> 128 g8 3x3 0.79; 12 outputs 1.38-2.0, 8 1.2-1.3)
    return spec.groups == 1 or Og < 16


# Dilated stride-1 convolution splits into undilated ones: with the input zero-padded,
# output position d*m + r (per dimension) reads only input positions d*j + r, so each
# of the prod(dilation) stride phases of the padded input is an ordinary (dilation 1,
# padding 0) convolution with the same weights, and the phases together form one
# batch, on which a 3x3 layer can take Winograd. "auto" runs the phases only for
# Winograd, when its cost plus PHASE_COPY_COST per gathered / scattered element beats
# the dilated im2col by WINO_MARGIN: the copies and their fresh buffers cost far more
# than a plain copy (4 x 64 -> 64 at 56x56 NCHW: 2.3 ms of Winograd took 6.2 ms with the
# phase copies), and im2col on the phases lost to im2col reading the dilated taps in
# place (grouped 96 -> 32 g4 d2 at 28x28 NCHW: 0.42 against 0.27 ms, the grouped direct
# kernel 0.17). Measured on the AVX-512 EPYC, 2 threads, float32, 7 interleaved rounds,
# auto / im2col (3x3, batch, C = O, size, dilation), channels-last: 1 256 28 d2 0.88,
# 1 128 56 d2 0.58, 4 64 56 d2 0.66, 8 128 28 d2 0.60, 1 64 56 d4 0.87, 2 96 40 d2 0.63,
# 16 64 16 d2 0.71, 2 128 64 d4 0.62, but 1 192 28 d3 1.15; channels-first pixel rows:
# 1 128 56 d2 0.75, 8 128 28 d2 0.84, 2 128 64 d4 0.64, 1 256 28 d2 0.88-1.01 (before the
# copy term, 64 channels lost: 1.14-1.65). An earlier build on the AVX-512 Xeon measured
# F(2x2,3x3) phases at 5.15 against 5.78 ms for 256 d2 at 28x28 channels-first (padded-
# grid im2col), but behind the pixel rows (6.84 against 5.06).
PHASE_MIN_OUT = 8  # each phase's output at least this long in every dilated dim
PHASE_COPY_COST = {False: 150.0, True: 60.0}  # channels_last -> MACs per copied element


def stride_phase_spec(spec):
    """The ConvSpec of the batch of stride phases of a dilated stride-1 spec's padded
    input (dilation 1, no padding; see above), or None where a dilated dimension's phases
    are shorter than PHASE_MIN_OUT outputs."""
    import dataclasses

    sizes, nph = [], 1
    for n, (b, a), k, d in zip(spec.in_size, spec.pads, spec.kernel, spec.dilation):
        m = -(-(n + b + a) // d)  # the longest phase of the padded input
        if d > 1 and m - k + 1 < PHASE_MIN_OUT:
            return None
        sizes.append(m)
        nph *= d
    out = tuple(m - k + 1 for m, k in zip(sizes, spec.kernel))
    nd = spec.nd
    return dataclasses.replace(
        spec, batched=True, N=spec.N * nph, in_size=tuple(sizes), dilation=(1,) * nd,
        pads=((0, 0),) * nd, padding_mode="zeros", out_size=out)


def dilation_phase_spec(spec):
    """For "auto": stride_phase_spec(spec) when spec is dilated, stride 1, not on a
    direct kernel (they take dilation as is), and Winograd on the phases, with the
    copies, pays against the dilated im2col; else None."""
    if all(d == 1 for d in spec.dilation) or any(s != 1 for s in spec.stride):
        return None
    return _dilation_phase_spec(spec, tuple(sorted(PHASE_COPY_COST.items())),
                                _im2col.PIXROW)


@functools.lru_cache(maxsize=1024)
def _dilation_phase_spec(spec, copy_cost, pixrow):
    # cached per spec, like _auto_forward (the cost models took ~25 us a call); the
    # arguments after spec are the module state it reads that tests change
    import dataclasses

    del pixrow  # read by nchw_pixrow through im2col_cost; here only a cache key
    if is_depthwise(spec) and spec.groups > 1:
        return None
    if _direct.fewc_eligible(spec.channels_last, spec.Cg, spec.groups, spec.Og,
                              math.prod(spec.kernel), spec.dtype) and \
            _direct.fewc_lanes(spec.dtype) > 1:
        return None  # the few-channel direct kernel takes dilation as is
    if grouped_direct_pays(spec):
        return None  # so does the grouped direct kernel
    if winograd_limit(dataclasses.replace(spec, dilation=(1,) * spec.nd)):
        return None
    pspec = stride_phase_spec(spec)
    if pspec is None:
        return None
    v = _winograd_pays(pspec)
    copies = pspec.N * (spec.C * math.prod(pspec.in_size) + spec.O * math.prod(pspec.out_size))
    if v is None or (winograd_cost(pspec, v.winograd_m)
                     + copies * dict(copy_cost)[spec.channels_last]
                     > WINO_MARGIN * im2col_cost(spec)):
        return None
    return pspec


def pointwise_strided_spec(spec, op="forward"):
    """A 1x1 (every kernel size 1) strided convolution without padding reads only every
    stride-th input position: for "auto", the spec of its stride-1 form over those
    positions (forward and grad_weight read a subsampled copy of x, grad_input scatters
    its stride-1 gradient back there), where that pays for `op` ("forward",
    "grad_input", "grad_weight"); else None. The kernels run strided problems in place
    well enough only dense and 2-D. Measured 2 threads, float32, 9 interleaved rounds,
    subsampled / in place:
    forward, channels-first: NCDHW 32 -> 128 at 12^3 batch 8 0.31 (torch: 0.23 ms
    against 0.75 in place), grouped 96 -> 8 g2 0.08, 2-D 0.71-0.94; channels-last reads
    in place (0.9-1.1 either way) and keeps it, but for groups of under 16 channels
    (which im2col would run channels-first between transposes): 0.23-0.61 (96 -> 32 in
    8 groups at 56^2 batch 8: 0.86 -> 0.19 ms), 64 -> 64 in 8 groups 1.0-1.5 (0.02 ms).
    grad_input: channels-first 0.77-0.99 (3-D 0.77, 1024 <- 2048 at 14x14 batch 8 0.82),
    grouped 0.27-0.32, channels-last small problems 0.64 (1024 <- 2048 at 7x7 outputs
    batch 8) but 1.0-1.1 from 3000 output pixels (64 <- 128 at 28x28 batch 8).
    grad_weight: 3-D 0.07-0.30, grouped 0.53, channels-first few outputs (Og 16) 0.36-0.42,
    but dense 2-D channels-first with more outputs 0.91-1.13, channels-last 1.0-2.0, 1-D
    1.41."""
    import dataclasses

    if (math.prod(spec.kernel) != 1 or all(s == 1 for s in spec.stride)
            or any(b or a for b, a in spec.pads)):
        return None
    Og = spec.O // spec.groups
    cl = spec.channels_last
    if op == "forward":
        # channels-last groups of under 16 channels: im2col would run them channels-first
        # between transposes (nhwc_via_nchw), the subsampled copy avoids that
        pays = not cl or (spec.groups > 1 and spec.Cg < 16 and not is_depthwise(spec))
    elif op == "grad_input":
        pays = (not cl or spec.groups > 1
                or spec.N * math.prod(spec.out_size) <= POINTWISE_GI_MAX_PIXELS)
    else:
        pays = spec.nd == 3 or spec.groups > 1 or (not cl and Og <= 32)
    if not pays:
        return None
    nd = spec.nd
    return dataclasses.replace(spec, batched=True, in_size=spec.out_size, stride=(1,) * nd,
                               dilation=(1,) * nd, padding_mode="zeros")


POINTWISE_GI_MAX_PIXELS = 1024  # channels-last grad_input: batch x output pixels


PATCH_MAX_C = 16


def patch_spec(spec, op="forward"):
    """A convolution whose kernel equals its stride in every dimension, without padding,
    dilation (where the kernel is larger than 1) or groups, reads each input position at
    most once, in non-overlapping patches (the ViT, Swin and ConvNeXt stems, ConvNeXt's
    2x2 stride-2 downsampling): it is a 1x1 convolution over a space-to-depth copy of
    its input (functional.space_to_depth; C * prod(kernel) channels over the output
    grid, the weight merely reshaped). For "auto", the ConvSpec of that 1x1 problem for
    `op` ("forward", "grad_input": the 1x1 input gradient copied back, depth to space,
    "grad_weight") where it pays, else None: with fewer than PATCH_MAX_C input channels
    (the kernels handle a few channels per tap poorly, the 1x1 problem has C * k^nd),
    2-D or 3-D, channels-last (all three ops) or 2-D channels-first (grad_weight).
    Measured 2 threads, float32, 7 interleaved rounds, 1x1 route / in place (batch 8):
    channels-last ViT 16x16 3 -> 768 at 224^2 forward 0.70, grad_input 0.78, grad_weight
    0.90; ConvNeXt 4x4 3 -> 96 0.97, 0.84, 0.57 (2.16 -> 1.23x PyTorch); Swin 4x4 3 ->
    128 0.95, 0.82, 0.58; video 2x8x8 3 -> 384 at 8x32x32 (batch 1) 0.84, 0.83, 0.64;
    channels-first stems grad_weight 0.82-0.83 (forward 1.04-1.05, grad_input 1.07-1.18,
    3-D grad_weight 1.42: not taken). Not ConvNeXt's 2x2 downsampling (96-384 channels:
    1.0-1.17, channels-first grad_input 384 -> 768 at 14^2 1.63) nor 1-D (PatchTST 16
    7 -> 128: 0.97-1.25). Nor channels-last grad_weight with fewer channels than
    ``_backward.gw_cols_max_cg()``: the im2col rows of _gw_cols already gather whole
    patches, in place / route 0.76-0.77 (ConvNeXt, Swin), 0.81 at batch 1, ViT 0.97,
    video 0.86."""
    import dataclasses

    kk = math.prod(spec.kernel)
    if (not _is_patch(spec) or spec.groups != 1
            or any(d != 1 and k > 1 for k, d in zip(spec.kernel, spec.dilation))):
        return None
    if spec.C >= PATCH_MAX_C or spec.nd == 1:
        return None
    if not spec.channels_last and (op != "grad_weight" or spec.nd != 2):
        return None
    if spec.channels_last and op == "grad_weight" and spec.C < _backward.gw_cols_max_cg():
        return None
    nd = spec.nd
    return dataclasses.replace(
        spec, batched=True, C=spec.C * kk, in_size=spec.out_size, kernel=(1,) * nd,
        stride=(1,) * nd, dilation=(1,) * nd, padding_mode="zeros")


def is_depthwise(spec):
    """One input channel per group (groups == C), any channel multiplier O / C."""
    return spec.C >= 1 and spec.groups == spec.C


@functools.lru_cache(maxsize=1024)
def _auto_forward(spec, packed=False):
    # cached per spec (frozen, hashable): the cost models below took ~10 us a call, as
    # much as a small layer's kernel; the ISA path they read is fixed at import. Code
    # that changes this module's constants at run time must call
    # _auto_forward.cache_clear().
    # Depthwise problems (one input channel per group) do almost no work per GEMM:
    # the dedicated direct kernels, vectorised along W / C, beat a GEMM per group.
    if is_depthwise(spec) and spec.groups > 1:
        return Algorithm.DEPTHWISE
    # Channels-last with a few input channels (RGB stems): the direct kernel with output
    # channels as SIMD lanes (direct_fewc.h) skips im2col's 3-wide rows. Measured 2
    # threads, float32: ResNet stem 7x7/2 3->64 at 224^2 0.59-0.67 ms against im2col
    # 0.97; CIFAR 3x3 3->32 batch 16 0.17 ms against Winograd 0.22. Not on the portable
    # path (one lane there).
    if _direct.fewc_eligible(spec.channels_last, spec.Cg, spec.groups, spec.Og,
                              math.prod(spec.kernel), spec.dtype) and \
            _direct.fewc_lanes(spec.dtype) > 1:
        return Algorithm.DIRECT
    if grouped_direct_pays(spec) and not grouped_pointwise_im2col(spec):
        return Algorithm.DIRECT
    wino = _winograd_pays(spec, packed)
    if wino is not None:
        return wino
    return Algorithm.IM2COL


def choose_backward(spec, algorithm):
    """The Algorithm for grad_input / grad_weight of the convolution `spec`
    (also a transposed convolution's forward): "im2col" is GEMM + col2im / an
    implicit-GEMM reduction; "direct" is the depthwise loop nest (one input channel per
    group only). "auto" takes "direct" for depthwise-style problems."""
    depthwise = spec.Cg == 1
    if algorithm == "direct":
        if not depthwise:
            raise ValueError(
                f"{spec.fname}: algorithm='direct' computes backward passes only for "
                f"depthwise-style problems (one input channel per group), this one has "
                f"{spec.Cg} (C={spec.C}, groups={spec.groups}); use 'auto' or 'im2col'")
        return Algorithm.DIRECT
    if algorithm == "im2col":
        return Algorithm.IM2COL
    return Algorithm.DIRECT if depthwise and spec.groups > 1 else Algorithm.IM2COL


# gwdot's lanes run along output rows: short rows leave lanes empty. The GEMM path
# ("im2col") wins on dense problems with long reductions over (channel, tap); gwdot on
# few channels per group. Crossovers measured on the AVX-512 machine, one thread
# (ratios gwdot / GEMM: K = 27: 0.43, 144: 0.37, 288: 0.97, 576: 0.96, 1152 at
# 28x28: 1.6; ResNeXt K = 72: 0.26; rows of 8: 1.3, rows of 4: 2.4; 1x1 K = 64: 1.15).
_GWDOT_MIN_ROW = 16
_GWDOT_MAX_K = 640
_GWDOT_ALWAYS_K = 64
_GWDOT_MAX_OG = 32


def choose_grad_weight(spec, algorithm):
    """The Algorithm for grad_weight. Channels-first layouts: "direct" is the gwdot
    kernel (dot products along output rows, _kernels/gwdot.h) for any groups; "auto"
    takes it for few (channel, tap) pairs per group (K = Cg * taps < 64), or for
    K <= 640 with a spatial kernel, stride 1 and output rows of at least 16 (a grid
    without gaps between rows counts as one long row), and the GEMM otherwise.
    Channels-last: as :func:`choose_backward`."""
    if spec.channels_last:
        return choose_backward(spec, algorithm)
    if algorithm == "direct":
        return Algorithm.DIRECT
    if algorithm == "im2col":
        return Algorithm.IM2COL
    k = spec.as3d(spec.kernel, 1)
    d = spec.as3d(spec.dilation, 1)
    s = spec.as3d(spec.stride, 1)
    od, oh, ow = spec.as3d(spec.out_size, 1)
    taps = math.prod(k)
    K = spec.Cg * taps
    if K < _GWDOT_ALWAYS_K and ow * oh * od >= 8:
        return Algorithm.DIRECT
    # few output channels per group: the GEMM's transposed column panels (K x pixels)
    # are each used by only Og rows, gwdot packs nothing. Measured 2 threads, float32,
    # two rounds, gwdot / GEMM: Og 16 0.45-0.85, 24 0.54-0.86, 32 0.62-0.93 (3x3-7x7,
    # 64-512 channels, 14x14-56x56, stride 1 and 2; 7x7 images: 0.49); Og 48 0.69-1.10,
    # 64 0.88-1.32. Small images that run channels-last (nchw_via_nhwc) keep the GEMM.
    if spec.O // spec.groups <= _GWDOT_MAX_OG and ow * oh * od >= 8 and \
            not nchw_via_nhwc(spec):
        return Algorithm.DIRECT
    gapless = all((kk - 1) * dd // ss == 0 for kk, dd, ss in zip(k[1:], d[1:], s[1:]))
    row = od * oh * ow if gapless else ow
    # strided: the GEMM (gwdot reads every other element of its input runs; measured
    # 3x3 stride 2, 64 -> 128 at 56x56: gwdot / GEMM = 1.3-1.8)
    if (taps > 1 and K <= _GWDOT_MAX_K and row >= _GWDOT_MIN_ROW
            and all(st == 1 for st in s)):
        return Algorithm.DIRECT
    return Algorithm.IM2COL


def explain(spec, algorithm="auto"):
    """A short description of what would run: algorithm, MACs, workspace bound."""
    algo = choose_forward(spec, algorithm)
    k = math.prod(spec.kernel)
    return {
        "algorithm": algo.value,
        "macs": spec.macs,
        "gemm_shape_per_group": (
            (math.prod(spec.out_size), spec.Og, spec.Cg * k) if spec.channels_last
            else (spec.Og, math.prod(spec.out_size), spec.Cg * k)
        ),
        "groups": spec.groups,
    }
