"""Inference-only networks and exact, memory-planned tiling: same outputs, less memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrenhance.enhance_api import Enhancer, parse_size, resolve_precision
from mrenhance.errors import InputError
from mrenhance.models import create_model
from mrenhance.models.fused import FusedMDCSRN, for_inference
from mrenhance.tasks import get_task


def _trained_like(name: str, **options) -> torch.nn.Module:
    """A network with non-trivial BatchNorm statistics and weights (as after training)."""
    torch.manual_seed(0)
    model = create_model(name, **options)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    torch.nn.init.normal_(model.reconstruction.weight, std=0.05)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("mdcsrn-b2u4", {"growth": 8}, (2, 1, 14, 12, 10)),
        ("mdcsrn-b3u4", {"growth": 4, "global_residual": True}, (1, 1, 11, 9, 13)),
        ("dcsrn-b1u8", {"growth": 4}, (1, 1, 10, 10, 10)),
        ("mdcsrn-b2u4", {"growth": 4, "spatial_dims": 2}, (3, 1, 20, 18)),
    ],
)
def test_fused_network_computes_the_same_function(name, options, shape):
    model = _trained_like(name, **options)
    fused = for_inference(model)
    assert isinstance(fused, FusedMDCSRN)
    x = torch.randn(shape)
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)


def test_for_inference_leaves_other_and_training_models_alone():
    critic = create_model("wgan-critic3d", base=4)
    assert for_inference(critic) is critic
    training = create_model("mdcsrn-b2u4", growth=4).train()
    assert for_inference(training) is training


def test_fused_network_needs_less_activation_memory():
    from mrenhance.engine.grid import activation_bytes_per_voxel

    model = create_model("mdcsrn-b4u4").eval()
    eager = activation_bytes_per_voxel(model)
    one_pass = for_inference(model)
    one_pass.stream_chunk = None  # the one-pass design; streaming is measured per plane
    fused = activation_bytes_per_voxel(one_pass)
    assert fused < 0.5 * eager  # no cat of the 416-channel stack, one block buffer at a time


@pytest.mark.parametrize("stream_chunk", [None, 16, 5])
def test_exact_tiling_equals_one_untiled_call(small_brain, stream_chunk):
    """With a budget that forces several tiles, the output equals the network on the whole
    (tiles run in one pass, or streamed along their longest side)."""
    model = _trained_like("mdcsrn-b2u4", growth=4)
    task = get_task("sr_t1")
    volume = task.example_input(np.random.default_rng(1))
    volume = volume.with_data(np.tile(small_brain, (2, 1, 1)) * 100)  # (48, 28, 20)
    budget = 6e6
    if stream_chunk is not None:  # 80 % of what one streamed tile of the whole would need
        from mrenhance.engine.grid import estimate_tile_bytes, streaming_costs

        net = for_inference(model)
        net.stream_chunk = stream_chunk
        costs = streaming_costs(net)
        budget = 0.8 * estimate_tile_bytes(net, volume.shape, bytes_per_voxel=0, stream=costs)
    enhancer = Enhancer(model, task, inference={"tiling": "exact"}, max_memory=budget)
    enhancer.net.stream_chunk = stream_chunk
    out = enhancer(volume).data
    plan = enhancer.last_plan
    assert plan.overlap == (18, 18, 18)  # 2 x the receptive-field radius of b2u4 (9)
    assert any(p < n for p, n in zip(plan.patch, volume.shape, strict=True))  # really tiled
    array, ctx = task.prepare(volume)
    with torch.no_grad():
        whole = model(torch.from_numpy(array)[None, None]).numpy()[0, 0]
    expected = np.clip(whole * ctx["scale"], 0, None)
    assert np.abs(out - expected).max() <= 1e-4 * ctx["scale"]


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("mdcsrn-b2u4", {"growth": 4}, (1, 1, 14, 12, 10)),
        ("mdcsrn-b3u4", {"growth": 4, "global_residual": True}, (1, 1, 11, 9, 13)),
        ("dcsrn-b1u8", {"growth": 4}, (1, 1, 10, 10, 10)),
        ("mdcsrn-b2u4", {"growth": 4}, (1, 1, 1, 5, 6)),  # one plane
        ("mdcsrn-b2u4", {"growth": 4}, (1, 1, 2, 5, 6)),  # fewer planes than a 3^3 kernel
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_streaming_computes_the_same_function(name, options, shape, chunk):
    """Slab by slab along dim 2, every chunk size (one plane to more than the depth)."""
    model = _trained_like(name, **options)
    fused = for_inference(model)
    x = torch.randn(shape)
    with torch.no_grad():
        np.testing.assert_allclose(fused.stream(x, chunk).numpy(), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 1, 9, 13, 11), (1, 1, 8, 7, 12), (1, 1, 6, 6, 6)])
def test_streaming_along_the_longest_axis_transposes_the_kernels(shape):
    """forward() streams along the longest side (here dims 3, 4 and 2): same function."""
    model = _trained_like("mdcsrn-b2u4", growth=4)
    fused = for_inference(model)
    fused.stream_chunk = 3
    x = torch.randn(shape)
    with torch.no_grad():
        np.testing.assert_allclose(fused(x).numpy(), model(x).numpy(), atol=1e-5)


def test_streamed_memory_does_not_grow_along_the_streamed_axis():
    from mrenhance.engine.grid import streaming_costs

    fused = for_inference(_trained_like("mdcsrn-b2u4", growth=4))
    per_plane, per_voxel = streaming_costs(fused)
    assert per_voxel <= 12  # the input and output planes only (4 + 4 bytes, fp32)
    assert per_plane > 50 * per_voxel  # the slabs and kept planes, paid once per plane
    fused.stream_chunk = None
    assert streaming_costs(fused) is None  # a one-pass network plans as any other


def test_explicit_tiles_override_exact_tiling():
    model = create_model("mdcsrn-b2u4", growth=4).eval()
    enhancer = Enhancer(
        model, "sr_t1", inference={"tiling": "exact", "patch_size": 16, "overlap": 4}
    )
    assert not enhancer.exact and enhancer.plan.patch == (16, 16, 16)


def test_precision_choices():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(InputError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp8")


def test_bf16_is_close_to_fp32(small_brain):
    from mrenhance.volume import Volume

    model = _trained_like("mdcsrn-b2u4", growth=4, global_residual=True)
    torch.nn.init.normal_(model.reconstruction.weight, std=0.01)  # a small learnt residual
    volume = Volume(small_brain * 100)
    fp32 = Enhancer(model, "sr_t1", inference={"patch_size": 16, "overlap": 4})(volume).data
    bf16 = Enhancer(model, "sr_t1", inference={"patch_size": 16, "overlap": 4}, precision="bf16")(
        volume
    ).data
    assert np.linalg.norm(bf16 - fp32) < 0.01 * np.linalg.norm(fp32)  # bf16: 8-bit mantissa
    assert not np.array_equal(bf16, fp32)  # it really ran in bf16


@pytest.mark.parametrize(
    ("text", "value"), [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 1.5 * 2**30)]
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "nanG"])
def test_parse_size_refuses(text):
    with pytest.raises(InputError, match="max-memory"):
        parse_size(text)


@pytest.mark.parametrize("stream_chunk", [None, 4])
def test_no_slow_path_for_the_one_channel_first_convolution(stream_chunk):
    """PyTorch runs a 1-channel Conv3d as slow_conv3d; the fused network never does."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    model = _trained_like("mdcsrn-b2u4", growth=4)
    fused = for_inference(model)
    fused.stream_chunk = stream_chunk
    x = torch.randn(1, 1, 12, 10, 9)

    def one_channel_slow_calls(net) -> int:
        with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
            net(x)
        return sum(
            e.count
            for e in prof.key_averages(group_by_input_shape=True)
            if e.key == "aten::slow_conv3d" and e.input_shapes and e.input_shapes[0][1] == 1
        )

    assert one_channel_slow_calls(fused) == 0
    assert one_channel_slow_calls(model) > 0  # the eager network does take it: it can fail

    # nor for thin slabs: PyTorch's heuristic sends a batch-1 3^3 conv whose
    # channels x depth x height is <= 20480 to slow_conv3d (every conv of this small input)
    with torch.no_grad(), torch.profiler.profile() as prof:
        fused(x)
    assert not [e for e in prof.key_averages() if e.key.startswith("aten::slow_conv3d")]


class _ConvInputs(torch.utils._python_dispatch.TorchDispatchMode):
    """Records (layout, dtypes) of every convolution and pointwise call under it."""

    def __init__(self) -> None:
        super().__init__()
        self.convs: list[tuple[int, bool]] = []  # (input channels, channels-last dense)
        self.mixed: list[str] = []  # pointwise calls mixing tensor dtypes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if "convolution" in name:
            x = args[0]
            cl = x.is_contiguous(memory_format=torch.channels_last_3d)
            self.convs.append((x.shape[1], cl))
        if name.split(".")[0] in ("addcmul", "add_", "addcmul_"):
            dtypes = {a.dtype for a in [*args, *(kwargs or {}).values()] if torch.is_tensor(a)}
            if len(dtypes) > 1:
                self.mixed.append(f"{name} {sorted(map(str, dtypes))}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("autocast", [False, True])
def test_streamed_pass_convolves_channels_last_without_mixed_dtypes(autocast):
    """Every conv of a streamed pass reads a dense channels-last input (oneDNN's native
    layout: no reorder; a plane range is a view, not a copy), and under bf16 autocast no
    BatchNorm affine or running sum mixes dtypes (PyTorch's slow casting path)."""
    fused = for_inference(_trained_like("mdcsrn-b2u4", growth=4))
    x = torch.randn(1, 1, 14, 10, 9)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.no_grad()
    with torch.no_grad(), ctx, _ConvInputs() as seen:
        fused.stream(x, 4)
    wide = [cl for c, cl in seen.convs if c > 1]
    assert len(wide) > 20
    assert all(wide)
    assert seen.mixed == []


def test_bf16_on_a_cpu_without_native_bf16_warns_and_auto_avoids_it(monkeypatch, caplog):
    import mrenhance.enhance_api as api

    monkeypatch.setattr(api, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with caplog.at_level("WARNING", logger="mrenhance"):
        assert resolve_precision("bf16", "cpu") == "bf16"  # still the user's choice
    assert any("no native bf16" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(api, "cpu_has_native_bf16", lambda: True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mrenhance"):
        assert resolve_precision("bf16", "cpu") == resolve_precision("auto", "cpu") == "bf16"
    assert not caplog.records


def _bn_elu_case(planes: int = 3):
    """A strided channels-last view (a unit's input inside its block buffer) in bf16."""
    torch.manual_seed(1)
    buf = torch.randn(1, 24, planes + 2, 9, 7).to(torch.bfloat16)
    buf = buf.contiguous(memory_format=torch.channels_last_3d)
    src = buf[:, :16, 1 : planes + 1]
    scale = (torch.rand(1, 16, 1, 1, 1) + 0.5).to(torch.bfloat16)
    shift = (torch.randn(1, 16, 1, 1, 1) * 0.3).to(torch.bfloat16)
    return src, scale, shift


def _eager_bn_elu(src, scale, shift):
    return torch.nn.functional.elu(src.float() * scale.float() + shift.float())


@pytest.mark.parametrize("planes", [1, 3])
def test_bn_elu_kernel_equals_batchnorm_then_elu(monkeypatch, planes):
    import shutil

    from mrenhance.models import fused as fused_mod

    monkeypatch.setitem(fused_mod._BN_ELU, "fn", None)
    monkeypatch.delenv(fused_mod.FUSED_KERNELS_ENV, raising=False)
    src, scale, shift = _bn_elu_case(planes)
    before = src.clone()
    out = torch.empty(src.shape, dtype=src.dtype, memory_format=torch.channels_last_3d)
    fused_mod.bn_elu_into(src, scale, shift, out)
    # one bf16 rounding of the exact value (eager bf16 rounds twice: within 2 ulps of it)
    np.testing.assert_allclose(
        out.float().numpy(), _eager_bn_elu(src, scale, shift).numpy(), rtol=2**-8, atol=2**-9
    )
    assert torch.equal(src, before)  # the block buffer is read, never written
    if shutil.which("g++") or shutil.which("c++"):
        assert fused_mod.fused_kernel_status() == "on"


def test_bn_elu_kernel_switched_off_or_failing_falls_back_to_eager(monkeypatch, caplog):
    from mrenhance.models import fused as fused_mod

    src, scale, shift = _bn_elu_case()
    eager = torch.empty_like(src)
    fused_mod._bn_elu_eager(src, scale, shift, eager)

    monkeypatch.setitem(fused_mod._BN_ELU, "fn", None)
    monkeypatch.setenv(fused_mod.FUSED_KERNELS_ENV, "off")
    out = torch.empty_like(src)
    fused_mod.bn_elu_into(src, scale, shift, out)
    assert torch.equal(out, eager)
    assert fused_mod.fused_kernel_status() == f"off ({fused_mod.FUSED_KERNELS_ENV}=off)"

    def broken(*args):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setitem(fused_mod._BN_ELU, "fn", broken)
    out = torch.empty_like(src)
    with caplog.at_level("WARNING", logger="mrenhance"):
        fused_mod.bn_elu_into(src, scale, shift, out)
        fused_mod.bn_elu_into(src, scale, shift, out)  # the failure is logged once
    assert torch.equal(out, eager)
    assert fused_mod.fused_kernel_status().startswith("off (RuntimeError")
    warnings = [r for r in caplog.records if "BatchNorm + ELU kernel" in r.getMessage()]
    assert len(warnings) == 1


def test_bn_elu_kernel_only_for_bf16_on_the_cpu(monkeypatch):
    """fp32 keeps eager PyTorch (the kernel gains 4 % there, less than its compile)."""
    from mrenhance.models import fused as fused_mod

    calls = []
    monkeypatch.setitem(fused_mod._BN_ELU, "fn", lambda *a: calls.append(a[0].dtype))
    src, scale, shift = (t.float() for t in _bn_elu_case())
    out = torch.empty_like(src)
    fused_mod.bn_elu_into(src, scale, shift, out)
    assert calls == []
    np.testing.assert_allclose(out.numpy(), _eager_bn_elu(src, scale, shift).numpy(), atol=1e-6)
    src, scale, shift = _bn_elu_case()
    fused_mod.bn_elu_into(src, scale, shift, torch.empty_like(src))
    assert calls == [torch.bfloat16]


def test_streamed_bf16_pass_with_the_kernel_matches_eager(monkeypatch):
    from mrenhance.models import fused as fused_mod

    fused = for_inference(_trained_like("mdcsrn-b2u4", growth=4))
    x = torch.randn(1, 1, 13, 10, 9)
    outs = {}
    for mode in ("auto", "off"):
        monkeypatch.setitem(fused_mod._BN_ELU, "fn", None)
        monkeypatch.setenv(fused_mod.FUSED_KERNELS_ENV, mode)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs[mode] = fused.stream(x, 4).float()
    with torch.no_grad():
        ref = fused.stream(x, 4)
    scale = float(ref.abs().max())
    assert float((outs["auto"] - outs["off"]).abs().max()) < 0.02 * scale
    for out in outs.values():  # both as close to fp32 as bf16 allows
        assert float((out - ref).abs().max()) < 0.03 * scale


def test_bf16_streams_deeper_slabs_and_plans_with_bf16_memory():
    from mrenhance.engine.grid import streaming_costs
    from mrenhance.models.fused import BF16_STREAM_CHUNK

    model = _trained_like("mdcsrn-b2u4", growth=4)
    fp32 = Enhancer(model, "sr_t1")
    bf16 = Enhancer(model, "sr_t1", inference={"tiling": "exact"}, precision="bf16")
    assert fp32.net.stream_chunk == 4
    assert bf16.net.stream_chunk == BF16_STREAM_CHUNK == 8
    # the planner's probe runs as inference will: bf16 maps count half the bytes
    plane32, _ = streaming_costs(bf16.net)
    plane16, _ = streaming_costs(bf16.net, autocast_dtype=torch.bfloat16)
    assert 0.4 * plane32 < plane16 < 0.7 * plane32
    bf16.plan_for((20, 12, 10))
    assert bf16._stream_costs[0] == pytest.approx(plane16, rel=0.05)


def test_bf16_provenance_says_whether_the_kernel_ran(monkeypatch, small_brain):
    from mrenhance.models import fused as fused_mod
    from mrenhance.volume import Volume

    model = _trained_like("mdcsrn-b2u4", growth=4)
    for mode, word in (("off", "off"), ("auto", None)):
        monkeypatch.setitem(fused_mod._BN_ELU, "fn", None)
        monkeypatch.setenv(fused_mod.FUSED_KERNELS_ENV, mode)
        out = Enhancer(model, "sr_t1", precision="bf16")(Volume(small_brain * 100))
        step = out.meta["provenance"][-1]
        expected = word or fused_mod.fused_kernel_status().split(" ", 1)[0]
        assert f"bn_elu_kernel={expected}" in step
    fp32 = Enhancer(model, "sr_t1")(Volume(small_brain * 100))
    assert "bn_elu_kernel" not in fp32.meta["provenance"][-1]
