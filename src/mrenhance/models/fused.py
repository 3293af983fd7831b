"""Inference-only equivalents of trained networks: same outputs, less memory, less glue.

:func:`for_inference` turns a trained network into a module that computes the same
function (to float rounding) for whole-volume inference, and returns any network it has
no rewrite for unchanged. The rewrite for mDCSRN/DCSRN (:class:`FusedMDCSRN`):

* **no concatenation copies**: each DenseBlock's units write their ``growth`` new maps into
  one preallocated channel buffer (eager PyTorch copies the growing stack with ``torch.cat``
  at every unit: ``units`` copies of up to ``in + (units - 1) * growth`` channels);
* **fused normalisation + activation**: eval-mode BatchNorm is a per-channel affine, applied
  with one ``addcmul`` into a reused scratch buffer, then ELU in place;
* **incremental 1^3 convolutions**: the compressors and the reconstruction layer are 1^3
  convolutions over ``cat[f0, b1, ..., bi]``; a 1^3 convolution of a concatenation is the
  sum of 1^3 convolutions of its pieces, so each block's output is folded into running
  sums as soon as it exists and freed. The full ``cat`` (416 channels for b4u4) never
  exists; peak memory holds one block buffer, its scratch and the running sums.

**Streaming along one axis** (:meth:`FusedMDCSRN.stream`, 3D only): a network of stride-1
3^3 convolutions (zero padding) and pointwise layers can be evaluated slab by slab along
one axis *exactly*, with no halo recomputation: each 3^3 convolution keeps the last two
planes of its input from the previous slab (and sees a zero plane before the first and
after the last), so it emits the planes whose three-plane neighbourhood is complete. Every
stream then trails the input by its depth in 3^3 layers (mDCSRN-b4u4: f0 by 1 plane, the
last unit by 17); a dense block aligns its pieces by keeping the planes its most delayed
consumer still needs, and the running 1^3 sums wait for their last piece. Memory no
longer grows with the streamed axis (only the input and output do): one tile can span
the whole length of that axis, so exact whole-volume inference needs tiles (with the
receptive-field halo) across the other two axes only, or none. Outputs equal the untiled
network to float rounding (tested to 1e-5).

**Channels-last buffers, no copies** (the streamed pass): every feature map lives in the
channels-last layout, which is oneDNN's native layout for 3D convolutions (no reorder to
and from its blocked format on every call) and in which a range of planes along the
streamed axis is one contiguous block. Each dense block keeps its input and its units'
new maps in one buffer (:class:`_Window`, each piece in its own channels, each at its own
delay); a unit's BatchNorm + ELU is written straight into its convolution's input
(:class:`_PlaneConv`), and the 1^3 layers read the block's planes as a view. No
``torch.cat`` remains (it took 13 % of a streamed pass before). Under bf16 autocast the
folded BatchNorms and biases are cast to bf16 once, so no pointwise op mixes dtypes.

Measured effect: ``benchmarks/bench_inference.py`` (time and peak RSS per tile) and
``docs/performance.md``. Equality with the eager network is tested to 1e-5.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrenhance.models.blocks import DenseBlock

__all__ = ["FusedMDCSRN", "bn_elu_into", "for_inference", "fused_kernel_status", "stream_axis"]

_LOG = logging.getLogger(__name__)

#: environment switch for the generated BatchNorm + ELU kernel: "off" always uses eager
#: PyTorch (two passes), anything else (default "auto") tries the kernel on the CPU
FUSED_KERNELS_ENV = "MRENHANCE_FUSED_KERNELS"
#: dtypes that get the generated kernel. Measured on the whole MNI volume (Xeon with AMX, 2
#: threads, docs/performance.md): bf16 22 % faster once compiled (23.2 -> 18.0 s), fp32
#: only 4 % (42.4 -> 40.7 s), less than the 2-4 s that compiling costs each process
KERNEL_DTYPES = (torch.bfloat16,)
#: planes per streamed slab under bf16 (the Enhancer sets it; fp32 keeps ``stream_chunk``
#: 4): measured on the whole MNI volume with the kernel (Xeon with AMX, one process, two
#: rounds): 17.3 / 17.1 s at 4 planes, 16.2 / 16.1 s at 8, 15.6 / 16.2 s at 12; bf16 maps
#: are half the bytes, so the MNI plane still fits the default budget in one tile
BF16_STREAM_CHUNK = 8
#: state of the generated kernel: None = not tried yet, False = unavailable, else the
#: compiled function; "reason" says why it is unavailable
_BN_ELU: dict[str, Any] = {"fn": None, "reason": ""}

#: the memory layout of every feature map in a streamed pass: channels last (N, D, H, W, C
#: in memory). oneDNN computes 3^3 convolutions on it without reordering to and from its
#: blocked layout (measured, docs/performance.md: a 112 -> 16 channel conv on a 10 x 197 x
#: 189 slab ran at 134 GFLOP/s instead of 96), and a range of planes along dim 2 is one
#: contiguous block, so slicing a slab never copies.
_CL = torch.channels_last_3d


def _cl(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the channels-last layout (no copy when it already is)."""
    return t.contiguous(memory_format=_CL)


def _bn_affine(bn: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm (or identity) over ``channels``."""
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        inv = torch.rsqrt(bn.running_var + bn.eps)
        scale = bn.weight * inv if bn.affine else inv
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        return scale.detach().clone(), shift.detach().clone()
    if isinstance(bn, nn.Identity):
        return torch.ones(channels), torch.zeros(channels)
    raise TypeError(f"no fused form for {type(bn).__name__}")


def _conv3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, ...]
) -> torch.Tensor:
    """``F.conv3d`` (stride 1), without PyTorch's slow path on the CPU.

    PyTorch sends some fp32 3D convolutions to ``slow_conv3d`` (im2col + GEMM): those with
    one input channel (mDCSRN's first layer, ~4x slower than oneDNN on the same call) and,
    by its shape heuristic, thin inputs such as a streamed slab of 6-12 planes (260 ms
    against ~60 ms through oneDNN for 64 channels of 6 x 48 x 48; ``docs/performance.md``).
    ``torch.mkldnn_convolution`` takes every fp32 CPU call directly. Under CPU autocast
    the result is cast to the autocast dtype, as ``F.conv3d`` would return it.
    """
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    ):
        y = torch.mkldnn_convolution(x, weight, bias, list(padding), [1, 1, 1], [1, 1, 1], 1)
        if torch.is_autocast_enabled("cpu"):
            y = y.to(torch.get_autocast_dtype("cpu"))
        return y
    return F.conv3d(x, weight, bias, padding=padding)


def _bn_elu_eager(
    src: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor
) -> None:
    torch.addcmul(shift, src, scale, out=out)
    F.elu(out, inplace=True)


def _bn_elu_graph(
    src: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor
) -> None:
    out.copy_(F.elu(torch.addcmul(shift, src, scale)))


def _bn_elu_kernel() -> Any:
    """The compiled BatchNorm + ELU function, or False where it cannot be had."""
    fn = _BN_ELU["fn"]
    if fn is None:
        if os.environ.get(FUSED_KERNELS_ENV, "auto").strip().lower() == "off":
            _BN_ELU.update(fn=False, reason=f"{FUSED_KERNELS_ENV}=off")
        else:
            try:
                fn = torch.compile(_bn_elu_graph, dynamic=True, fullgraph=True)
            except Exception as exc:  # noqa: BLE001  (no compiler back-end at all)
                _BN_ELU.update(fn=False, reason=f"{type(exc).__name__}: {exc}")
            else:
                _BN_ELU.update(fn=fn, reason="")
        fn = _BN_ELU["fn"]
    return fn


def _as_rows(
    src: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The kernel's arguments as (voxels, C) views (channels innermost, no copy), where
    they can be: then every call has the same rank and no size-1 dimension (a streamed
    slab of one plane would otherwise be a compile of its own), so one compile serves a
    whole pass. Otherwise the (1, C, *spatial) tensors as given."""
    c = src.shape[1]
    try:
        rows = src[0].movedim(0, -1).view(-1, c), out[0].movedim(0, -1).view(-1, c)
    except RuntimeError:  # not viewable as rows of channels (no such caller here)
        return src, scale, shift, out
    return rows[0], scale.reshape(c), shift.reshape(c), rows[1]


def _dispatch_mode_active() -> bool:
    """Whether a Python dispatch mode is on (e.g. the tile planner's memory probe,
    :func:`mrenhance.engine.grid.activation_bytes_per_voxel`): compiled code cannot run
    under one, and the eager path allocates as the kernel does (nothing: it writes into
    ``out``), so the probe measures the same memory."""
    length = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return bool(length()) if length is not None else False


def fused_kernel_status() -> str:
    """ "on", "not tried yet" or "off (<why>)" for the generated BatchNorm + ELU kernel."""
    fn = _BN_ELU["fn"]
    if fn is None:
        return "not tried yet"
    return "on" if fn is not False else f"off ({_BN_ELU['reason']})"


def bn_elu_into(
    src: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, out: torch.Tensor
) -> None:
    """``out = ELU(src * scale + shift)``: an eval BatchNorm folded to a per-channel
    affine, then ELU (alpha 1), written into ``out`` (same shape as ``src``, no alias).

    src, out : (1, C, *spatial); scale, shift : (1, C, 1, ...), the dtype of ``src``. For
    bf16 on the CPU (:data:`KERNEL_DTYPES`) this is one generated kernel (``torch.compile``,
    inductor's vectorised C++; shapes dynamic, 2-3 compiles per process, 2-5 s in all,
    kept in inductor's on-disk cache): one pass over memory instead of two, and an ``exp``
    much faster than eager bf16 ``F.elu``'s (a 96-channel slab: 7.7 ms against 19 ms;
    ``docs/performance.md``). Elsewhere (fp32, another device, no C++ compiler,
    ``MRENHANCE_FUSED_KERNELS=off``, under a dispatch mode) it is eager ``addcmul`` +
    in-place ELU; a failing compile is logged once and the eager path used from then on.
    Results agree to one bf16 rounding (the kernel rounds once, eager bf16 twice).
    """
    if src.device.type == "cpu" and src.dtype in KERNEL_DTYPES and not _dispatch_mode_active():
        fn = _bn_elu_kernel()
        if fn is not False:
            try:
                fn(*_as_rows(src, scale, shift, out))
                return
            except Exception as exc:  # noqa: BLE001  (a compiler missing or failing)
                _BN_ELU.update(fn=False, reason=f"{type(exc).__name__}: {str(exc)[:200]}")
                _LOG.warning(
                    "the fused BatchNorm + ELU kernel is not available here (%s); "
                    "using eager PyTorch (slower, same results)",
                    _BN_ELU["reason"].splitlines()[0] if _BN_ELU["reason"] else "unknown",
                )
    _bn_elu_eager(src, scale, shift, out)


def stream_axis(shape: tuple[int, ...] | list[int]) -> int:
    """The spatial axis a streamed forward pass runs along: the longest (first on ties).

    Memory of a streamed pass grows with the product of the *other* two sides, so the
    longest side is the cheapest to stream. Shared by the model and the tile planner
    (:func:`mrenhance.engine.grid.plan_for_memory`) so both agree.
    """
    sides = [int(n) for n in shape]
    return sides.index(max(sides))


class _PlaneConv:
    """One stride-1 3^3 convolution (zero padding 1) fed slab by slab along dim 2.

    Two steps per slab: :meth:`input` returns the (1, C, t, H, W) channels-last view the
    caller fills with the next ``t`` input planes (written straight into the conv's input,
    no concatenation copy); :meth:`run` then returns the output planes whose neighbourhood
    is now complete, starting at :attr:`next_out`. The input is padded by one zero plane
    at the start, the last two input planes are kept for the next slab, one zero plane is
    appended on the ``last`` slab. Over a whole stream the outputs are exactly the planes
    of the convolution of the whole input.
    """

    def __init__(self, conv: nn.Module, swap: int = 2) -> None:
        # streaming a transposed input (dim 2 <-> dim ``swap``) needs the kernel transposed
        # the same way: conv(x^T, W^T) = conv(x, W)^T for cubic kernels, symmetric padding
        w = conv.weight.detach()
        self.weight = _cl(w if swap == 2 else w.transpose(2, swap))
        self.bias = conv.bias
        self.out_channels = conv.out_channels
        self.hist: torch.Tensor | None = None
        self.next_out = 0
        self._inp: torch.Tensor | None = None
        self._last = False

    def input(
        self, channels: int, t: int, last: bool, plane: tuple[int, ...], like: torch.Tensor
    ) -> torch.Tensor:
        """The view (1, channels, t, *plane) to fill with the next ``t`` input planes."""
        h = 1 if self.hist is None else self.hist.shape[2]
        inp = torch.empty(
            (1, channels, h + t + int(last), *plane),
            dtype=like.dtype,
            device=like.device,
            memory_format=_CL,
        )
        if self.hist is None:
            inp[:, :, :1].zero_()
        else:
            inp[:, :, :h].copy_(self.hist)
        if last:
            inp[:, :, h + t :].zero_()
        self._inp, self._last = inp, last
        return inp[:, :, h : h + t]

    def run(self) -> torch.Tensor:
        """The output planes (1, out_channels, n, H, W) that the filled input completes."""
        inp, last = self._inp, self._last
        assert inp is not None, "input() first"
        self._inp = None
        if inp.shape[2] < 3:
            self.hist = inp
            return inp.new_empty((1, self.out_channels, 0, *inp.shape[3:]))
        out = _cl(_conv3d(inp, self.weight, self.bias, (0, 1, 1)))
        self.hist = None if last else inp[:, :, -2:].clone()
        self.next_out += out.shape[2]
        return out


class _Window:
    """Planes [start, end) of one channels-last stream (1, C, planes, H, W), in place.

    Planes are addressed by their absolute index along dim 2; :meth:`write` copies planes
    (optionally into a channel range: a dense block keeps all its pieces, which lag each
    other, in one buffer), :meth:`view` returns planes without a copy (a range of planes
    of a channels-last tensor is one contiguous block), :meth:`drop_before` frees the
    front. A write past the end moves the kept planes to the front of the buffer, and
    grows it only when they and the new planes do not fit.
    """

    def __init__(self, channels: int, plane: tuple[int, ...]) -> None:
        self.channels, self.plane = channels, tuple(plane)
        self.buf: torch.Tensor | None = None
        self.base = self.start = self.end = 0

    @property
    def dtype(self) -> torch.dtype:
        assert self.buf is not None
        return self.buf.dtype

    def _reserve(self, upto: int, like: torch.Tensor) -> None:
        if self.buf is not None and upto - self.base <= self.buf.shape[2]:
            return
        keep, need = max(0, self.end - self.start), upto - self.start
        if self.buf is not None and need <= self.buf.shape[2]:  # fits: move the kept planes
            if keep:  # to the front (through a copy: the two ranges may overlap)
                self.buf[:, :, :keep].copy_(self.view(self.start, self.end).clone())
            self.base = self.start
            return
        new = torch.empty(
            (1, self.channels, need, *self.plane),
            dtype=like.dtype if self.buf is None else self.buf.dtype,
            device=like.device,
            memory_format=_CL,
        )
        if self.buf is not None and keep:
            new[:, :, :keep].copy_(self.view(self.start, self.end))
        self.buf, self.base = new, self.start

    def write(self, planes: torch.Tensor, at: int, channels: slice = slice(None)) -> None:
        n = planes.shape[2]
        if n == 0:
            return
        if at < self.start:
            raise RuntimeError(f"stream write at plane {at}, before the window {self.start}")
        self._reserve(at + n, planes)
        assert self.buf is not None
        self.buf[:, channels, at - self.base : at - self.base + n].copy_(planes)
        self.end = max(self.end, at + n)

    def view(self, a: int, b: int, channels: slice = slice(None)) -> torch.Tensor:
        assert self.buf is not None and self.start <= a <= b and b - self.base <= self.buf.shape[2]
        return self.buf[:, channels, a - self.base : b - self.base]

    def drop_before(self, z: int) -> None:
        self.start = max(self.start, z)
        if self.start >= self.end:  # nothing kept: release the storage
            self.buf, self.base, self.end = None, self.start, self.start


class FusedMDCSRN(nn.Module):
    """The function of a trained :class:`mrenhance.models.dense.MDCSRN`, for inference only.

    Built from the trained network (weights copied, BatchNorm folded to scale/shift); see
    the module docstring for what changes. Shapes as MDCSRN: (B, C_in, *spatial) ->
    (B, C_out, *spatial); the batch is run one sample at a time (channel slices of one
    sample are contiguous, so no conv input is copied).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.global_residual = bool(model.global_residual)
        self.spatial_dims = model.conv0.weight.dim() - 2
        self._conv1x1 = F.conv3d if self.spatial_dims == 3 else F.conv2d
        self.conv0 = model.conv0
        width = model.conv0.out_channels
        n = len(model.blocks)
        self.units_conv = nn.ModuleList()
        scales, shifts, self.unit_channels, self.block_channels = [], [], [], []
        for block in model.blocks:
            if not isinstance(block, DenseBlock) or not block.include_input:
                raise TypeError("FusedMDCSRN needs DenseBlocks that include their input")
            channels = []
            for unit in block.units:
                bn, act, cv = unit[0], unit[1], unit[2]
                if not isinstance(act, nn.ELU) or not isinstance(cv, nn.modules.conv._ConvNd):
                    raise TypeError("FusedMDCSRN needs BatchNorm -> ELU -> conv units")
                s, t = _bn_affine(bn, cv.in_channels)
                scales.append(s)
                shifts.append(t)
                channels.append(cv.in_channels)
                self.units_conv.append(cv)
            self.unit_channels.append(channels)
            self.block_channels.append(block.out_channels)
        shape = (1, -1) + (1,) * self.spatial_dims
        for i, (s, t) in enumerate(zip(scales, shifts, strict=True)):
            self.register_buffer(f"scale{i}", s.reshape(shape))
            self.register_buffer(f"shift{i}", t.reshape(shape))
        self.growth = model.blocks[0].growth
        # the 1^3 layers split by the piece of cat[f0, b1, ..., bn] each column block reads
        pieces = [width, *self.block_channels]
        offsets = [0]
        for p in pieces:
            offsets.append(offsets[-1] + p)
        self.offsets = offsets
        for m, layer in enumerate([*model.compressors, model.reconstruction]):
            w = layer.weight.detach()
            self.register_buffer(f"bias_l{m}", layer.bias.detach().clone())
            for piece in range(len(pieces)):
                if piece > m + 1:  # layer m (before block m+1) reads pieces 0..m+1 only
                    continue
                a, b = offsets[piece], offsets[piece + 1]
                self.register_buffer(f"w_l{m}_p{piece}", w[:, a:b].contiguous().clone())
        self.n_blocks = n
        self.out_channels = model.reconstruction.out_channels
        # streaming needs every 3^3 layer stride 1, dilation 1, zero padding 1
        streamable = self.spatial_dims == 3 and all(
            c.kernel_size == (3, 3, 3)
            and c.stride == (1, 1, 1)
            and c.dilation == (1, 1, 1)
            and c.padding == (1, 1, 1)
            and c.padding_mode == "zeros"
            for c in [self.conv0, *self.units_conv]
        )
        #: planes per slab of a streamed forward pass; None = one pass over the whole tile.
        #: choice: 4, measured (docs/performance.md, channels-last streaming): the whole MNI
        #: volume ran in 71 s at 4, 70 s at 6 and 71 s at 8 planes (one tile each, Intel
        #: Xeon VM; a 48-plane slab on the AMD EPYC VM: 4, 6, 8 equally fast), but the
        #: activation estimate is 34 KB per plane voxel at 4 against 44 KB at 8, so at 4 the
        #: whole MNI plane fits the default 1.5 GiB budget in one tile (at 8 it took two tiles
        #: and 101 s).
        self.stream_chunk: int | None = 4 if streamable else None

    def _partial(self, m: int, piece: int, x: torch.Tensor) -> torch.Tensor:
        w = getattr(self, f"w_l{m}_p{piece}")
        if self.spatial_dims == 3:
            return _conv3d(x, w, None, (0, 0, 0))
        return self._conv1x1(x, w)

    def _unit(self, unit: int, x: torch.Tensor) -> torch.Tensor:
        cv = self.units_conv[unit]
        plain = cv.stride == cv.dilation == (1, 1, 1) and cv.groups == 1
        if self.spatial_dims == 3 and plain and cv.padding_mode == "zeros":
            if isinstance(cv.padding, tuple):  # not "same"/"valid"
                return _conv3d(x, cv.weight, cv.bias, cv.padding)
        return cv(x)

    @torch.no_grad()
    def _one(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_blocks
        f0 = (
            _conv3d(x, self.conv0.weight, self.conv0.bias, (1, 1, 1))
            if self.spatial_dims == 3
            else self.conv0(x)
        )
        # running sums: compressor m (m = 0..n-2, before block m+1) and the reconstruction
        # (m = n-1), each started from its bias and f0's contribution
        sums = []
        for m in range(n):
            bias = getattr(self, f"bias_l{m}").reshape((1, -1) + (1,) * self.spatial_dims)
            sums.append(self._partial(m, 0, f0).add_(bias))
        inp = f0
        unit = 0
        for i in range(n):
            if i > 0:
                inp = sums[i - 1]
                sums[i - 1] = None  # type: ignore[call-overload]  # complete; freed below
            spatial = inp.shape[2:]
            buf = inp.new_empty((1, self.block_channels[i], *spatial))
            c_in = inp.shape[1]
            buf[:, :c_in] = inp
            del inp
            scratch = buf.new_empty((1, self.block_channels[i] - self.growth, *spatial))
            for c in self.unit_channels[i]:
                work = scratch[:, :c]
                bn_elu_into(
                    buf[:, :c], getattr(self, f"scale{unit}"), getattr(self, f"shift{unit}"), work
                )
                buf[:, c : c + self.growth] = self._unit(unit, work)
                unit += 1
            del scratch
            for m in range(i, n):  # this block is piece i + 1 of the layers after it
                sums[m].add_(self._partial(m, i + 1, buf))
            del buf
        y = sums[n - 1]
        return y.add_(x) if self.global_residual else y

    @torch.no_grad()
    def stream(self, x: torch.Tensor, chunk: int = 4, swapped: int = 2) -> torch.Tensor:
        """The network on one 3D sample (1, C_in, D, H, W), ``chunk`` planes of D at a time.

        Same output as :meth:`_one` (float rounding aside); activation memory grows with
        H x W x (chunk + the network's depth in 3^3 layers), not with D. See the module
        docstring for the scheme. ``swapped``: ``x`` is the network's true input with
        dims 2 and ``swapped`` exchanged (the output comes back exchanged the same way).
        """
        if self.spatial_dims != 3 or x.shape[0] != 1:
            raise ValueError("stream() takes one 3D sample (1, C, D, H, W)")
        chunk = max(1, int(chunk))
        n = self.n_blocks
        depth, plane = x.shape[2], tuple(x.shape[3:])
        conv0 = _PlaneConv(self.conv0, swapped)
        convs = [_PlaneConv(c, swapped) for c in self.units_conv]
        fed = [0] * len(convs)  # next input plane of each unit conv
        biases = [
            getattr(self, f"bias_l{m}").reshape((1, -1) + (1,) * self.spatial_dims)
            for m in range(n)
        ]
        sums = [_Window(biases[m].shape[1], plane) for m in range(n)]
        # biases and folded BatchNorms in the dtype of the maps (bf16 under autocast): a
        # mixed-dtype addcmul or add_ into a bf16 buffer takes PyTorch's slow casting path
        # (measured: 3x the time of all the bf16 network's convolutions)
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        affine = [
            (getattr(self, f"scale{u}").to(dtype), getattr(self, f"shift{u}").to(dtype))
            for u in range(len(convs))
        ]
        biases = [b.to(dtype) for b in biases]
        # one buffer per dense block: its input and each unit's new maps in their channels;
        # ends[i][p] = planes of piece p (0: the block's input, j + 1: unit j) written so far
        blocks = [_Window(c, plane) for c in self.block_channels]
        ends = [[0] * (len(ch) + 1) for ch in self.unit_channels]
        block_next = [0] * n  # next plane each block hands on
        out: torch.Tensor | None = None
        n_chunks = -(-depth // chunk)
        for k in range(n_chunks):
            last = k == n_chunks - 1
            a = conv0.next_out
            slab = x[:, :, k * chunk : (k + 1) * chunk]
            conv0.input(x.shape[1], slab.shape[2], last, plane, x).copy_(slab)
            del slab  # (a view of x: the memory tracker counts x's storage while it lives)
            f0 = conv0.run()
            if f0.shape[2] == 0:  # nothing new downstream either (only a flush emits more)
                continue
            for m in range(n):
                sums[m].write(self._partial(m, 0, f0).add_(biases[m]), a)
            inp, at = f0, a
            del f0
            unit = 0
            for i in range(n):
                block, e = blocks[i], ends[i]
                channels = self.unit_channels[i]
                if inp.shape[2]:
                    block.write(inp, at, slice(0, channels[0]))
                    e[0] = max(e[0], at + inp.shape[2])
                for j, c in enumerate(channels):
                    lo, hi = fed[unit], min(e[: j + 1])
                    t = max(0, hi - lo)
                    like = block.buf if block.buf is not None else x
                    work = convs[unit].input(c, t, last, plane, like)
                    if t:
                        scale, shift = affine[unit]
                        bn_elu_into(block.view(lo, hi, slice(0, c)), scale, shift, work)
                    del work
                    start = convs[unit].next_out
                    new = convs[unit].run()
                    if new.shape[2]:
                        block.write(new, start, slice(c, c + self.growth))
                        e[j + 1] = max(e[j + 1], start + new.shape[2])
                    del new
                    fed[unit] = max(fed[unit], hi)
                    unit += 1
                lo, hi = block_next[i], min(e)
                if hi > lo:
                    piece = block.view(lo, hi)  # cat[input, unit maps] on [lo, hi), no copy
                    for m in range(i, n):
                        sums[m].view(lo, hi).add_(self._partial(m, i + 1, piece))
                    del piece
                    block.drop_before(hi)
                    block_next[i] = hi
                    done = sums[i].view(lo, hi)  # layer i has all its pieces on [lo, hi)
                else:
                    done = x.new_empty((1, 0, 0, *plane))
                if i < n - 1:
                    inp, at = done, lo  # block i + 1's input
                elif hi > lo:
                    if out is None:
                        out = done.new_empty((1, done.shape[1], depth, *plane))
                    out[:, :, lo:hi] = done
                    if self.global_residual:
                        out[:, :, lo:hi].add_(x[:, :, lo:hi])
                del done
                if hi > lo:
                    sums[i].drop_before(hi)
        assert out is not None and block_next[-1] == depth
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 3 and self.stream_chunk:
            if x.shape[0] == 1:  # no cat: it would copy the whole output tile once more
                return self._streamed(x)
            return torch.cat([self._streamed(x[b : b + 1]) for b in range(x.shape[0])], dim=0)
        if x.shape[0] == 1:
            return self._one(x)
        return torch.cat([self._one(x[b : b + 1]) for b in range(x.shape[0])], dim=0)

    def _streamed(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`stream` along the longest spatial axis of one sample (:func:`stream_axis`)."""
        axis = 2 + stream_axis(tuple(x.shape[2:]))
        if axis != 2:
            x = x.transpose(2, axis).contiguous()
        y = self.stream(x, self.stream_chunk, swapped=axis)
        return y.transpose(2, axis).contiguous() if axis != 2 else y


def for_inference(model: nn.Module) -> nn.Module:
    """An inference-only module computing the same function as ``model`` (eval mode).

    mDCSRN/DCSRN (registry family ``mdcsrn``) become :class:`FusedMDCSRN`; any other
    network is returned unchanged. The result keeps ``mrenhance_name``/``mrenhance_config``
    so provenance still names the trained architecture.
    """
    from mrenhance.models.dense import MDCSRN

    if isinstance(model, MDCSRN) and not model.training:
        fused = FusedMDCSRN(model).to(next(model.parameters()).device).eval()
        for attr in ("mrenhance_name", "mrenhance_config"):
            if hasattr(model, attr):
                setattr(fused, attr, getattr(model, attr))
        return fused
    return model
