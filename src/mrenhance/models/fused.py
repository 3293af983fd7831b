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

Measured effect: ``benchmarks/bench_inference.py`` (time and peak RSS per tile) and
``docs/performance.md``. Equality with the eager network is tested to 1e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrenhance.models.blocks import DenseBlock

__all__ = ["FusedMDCSRN", "for_inference", "stream_axis"]


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

    ``push(planes, last)`` takes the next planes of the input (1, C, t, H, W) and returns
    the output planes whose neighbourhood is now complete, starting at :attr:`next_out`:
    the input padded by one zero plane at the start, the last two input planes kept for
    the next call, one zero plane appended after the ``last`` call. Over a whole stream
    the outputs are exactly the planes of the convolution of the whole input.
    """

    def __init__(self, conv: nn.Module, swap: int = 2) -> None:
        # streaming a transposed input (dim 2 <-> dim ``swap``) needs the kernel transposed
        # the same way: conv(x^T, W^T) = conv(x, W)^T for cubic kernels, symmetric padding
        w = conv.weight
        self.weight = w if swap == 2 else w.transpose(2, swap).contiguous()
        self.bias = conv.bias
        self.out_channels = conv.out_channels
        self.hist: torch.Tensor | None = None
        self.next_out = 0

    def push(self, planes: torch.Tensor, last: bool) -> torch.Tensor:
        zero = planes.new_zeros(planes.shape[:2] + (1,) + planes.shape[3:])
        parts = [zero if self.hist is None else self.hist.to(planes.dtype)]
        if planes.shape[2]:
            parts.append(planes)
        if last:
            parts.append(zero)
        inp = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        if inp.shape[2] < 3:
            self.hist = inp
            return planes.new_empty((1, self.out_channels, 0, *planes.shape[3:]))
        out = _conv3d(inp, self.weight, self.bias, (0, 1, 1))
        self.hist = None if last else inp[:, :, -2:].clone()
        self.next_out += out.shape[2]
        return out


class _Planes:
    """Planes [start, start + n) of one stream along dim 2, kept until they are consumed."""

    def __init__(self) -> None:
        self.data: torch.Tensor | None = None
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + (0 if self.data is None else self.data.shape[2])

    def append(self, planes: torch.Tensor, at: int) -> None:
        if self.data is None or self.data.shape[2] == 0:
            self.data, self.start = planes, at
        elif planes.shape[2]:
            if at != self.end:
                raise RuntimeError(f"stream gap: planes at {at}, expected {self.end}")
            self.data = torch.cat([self.data, planes], dim=2)

    def get(self, a: int, b: int) -> torch.Tensor:
        assert self.data is not None and self.start <= a <= b <= self.end
        return self.data[:, :, a - self.start : b - self.start]

    def drop_before(self, z: int) -> None:
        if self.data is not None and z > self.start:
            keep = max(0, self.end - z)
            self.data = self.data[:, :, self.data.shape[2] - keep :].clone() if keep else None
            self.start = z


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
        #: choice: 8, measured (docs/performance.md): on a 48 x 197 x 189 slab (the MNI
        #: plane) 8 planes ran as fast as 16 (52-59 s vs 54-66 s, 3 runs each) at 2.2-2.7
        #: GB peak RSS instead of 3.0-6.3 GB; 4 planes saved little more (2.0 GB, 58 s).
        self.stream_chunk: int | None = 8 if streamable else None

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
                torch.addcmul(
                    getattr(self, f"shift{unit}"),
                    buf[:, :c],
                    getattr(self, f"scale{unit}"),
                    out=work,
                )
                F.elu(work, inplace=True)
                buf[:, c : c + self.growth] = self._unit(unit, work)
                unit += 1
            del scratch
            for m in range(i, n):  # this block is piece i + 1 of the layers after it
                sums[m].add_(self._partial(m, i + 1, buf))
            del buf
        y = sums[n - 1]
        return y.add_(x) if self.global_residual else y

    @torch.no_grad()
    def stream(self, x: torch.Tensor, chunk: int = 8, swapped: int = 2) -> torch.Tensor:
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
        depth = x.shape[2]
        conv0 = _PlaneConv(self.conv0, swapped)
        convs = [_PlaneConv(c, swapped) for c in self.units_conv]
        fed = [0] * len(convs)  # next input plane of each unit conv
        sums = [_Planes() for _ in range(n)]
        groups = [[_Planes() for _ in range(len(ch) + 1)] for ch in self.unit_channels]
        block_next = [0] * n  # next plane each block hands on
        biases = [
            getattr(self, f"bias_l{m}").reshape((1, -1) + (1,) * self.spatial_dims)
            for m in range(n)
        ]
        out: torch.Tensor | None = None
        n_chunks = -(-depth // chunk)
        for k in range(n_chunks):
            last = k == n_chunks - 1
            a = conv0.next_out
            f0 = conv0.push(x[:, :, k * chunk : (k + 1) * chunk], last)
            if f0.shape[2] == 0:  # nothing new downstream either (only a flush emits more)
                continue
            for m in range(n):
                if f0.shape[2]:
                    sums[m].append(self._partial(m, 0, f0).add_(biases[m]), a)
            inp, at = f0, a
            del f0
            unit = 0
            for i in range(n):
                g = groups[i]
                g[0].append(inp, at)
                for j, c in enumerate(self.unit_channels[i]):
                    lo, hi = fed[unit], min(p.end for p in g[: j + 1])
                    work = x.new_empty((1, c, max(0, hi - lo), *x.shape[3:]), dtype=g[0].data.dtype)
                    if hi > lo:
                        scale, shift = getattr(self, f"scale{unit}"), getattr(self, f"shift{unit}")
                        off = 0
                        for p in g[: j + 1]:
                            piece = p.get(lo, hi)
                            w = piece.shape[1]
                            torch.addcmul(
                                shift[:, off : off + w],
                                piece,
                                scale[:, off : off + w],
                                out=work[:, off : off + w],
                            )
                            off += w
                        F.elu(work, inplace=True)
                    start = convs[unit].next_out
                    new = convs[unit].push(work, last)
                    del work
                    g[j + 1].append(new, start)
                    del new
                    fed[unit] = hi
                    unit += 1
                lo, hi = block_next[i], min(p.end for p in g)
                if hi > lo:
                    buf = torch.cat([p.get(lo, hi) for p in g], dim=1)
                    for m in range(i, n):
                        sums[m].get(lo, hi).add_(self._partial(m, i + 1, buf))
                    del buf
                    for p in g:
                        p.drop_before(hi)
                    block_next[i] = hi
                done = sums[i].get(lo, hi)  # layer i has all its pieces on [lo, hi)
                if i < n - 1:
                    inp, at = done, lo  # block i + 1's input
                elif hi > lo:
                    if out is None:
                        out = done.new_empty((1, done.shape[1], depth, *x.shape[3:]))
                    out[:, :, lo:hi] = done
                    if self.global_residual:
                        out[:, :, lo:hi].add_(x[:, :, lo:hi])
                del done
                sums[i].drop_before(hi)
        assert out is not None and block_next[-1] == depth
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 3 and self.stream_chunk:
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
