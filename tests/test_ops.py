"""Conformance of every operator kind: shape inference agrees with execution, and the
imported graph computes what PyTorch (or onnxruntime, for hand-made ONNX nodes) does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from codl.frontends import from_onnx_model, from_torch
from codl.ir import Graph, Node, OpKind, verify_graph
from codl.ops import REGISTRY, family
from codl.processors import Processor
from codl.runtime import ReferenceRunner

CPU = Processor.parse("cpu")
COVERED: set[OpKind] = set()


class Fn(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def check_graph(graph: Graph, inputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor's executed shape equals its inferred spec; returns all tensors."""
    verify_graph(graph)
    values = ReferenceRunner(graph, CPU).run_all(*inputs)
    for name, value in values.items():
        assert tuple(value.shape) == graph.spec(name).shape, f"{name}: ran {tuple(value.shape)}, inferred {graph.spec(name)}"
    COVERED.update(n.op for n in graph.nodes)
    return values


def t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


TORCH_CASES = {
    "conv": (nn.Conv2d(4, 8, 3, 1, 1), [t(1, 4, 9, 7)], {OpKind.CONV}),
    "conv_strided_dilated": (nn.Conv2d(4, 6, 3, 2, 2, dilation=2, bias=False), [t(2, 4, 11, 10)], {OpKind.CONV}),
    "conv_groups": (nn.Conv2d(8, 8, 5, 1, 2, groups=4), [t(1, 8, 7, 7)], {OpKind.CONV}),
    "conv_depthwise": (nn.Conv2d(6, 6, 3, 2, 1, groups=6), [t(1, 6, 9, 9)], {OpKind.CONV}),
    "conv_transpose": (nn.ConvTranspose2d(4, 6, 3, 2, 1, output_padding=1), [t(1, 4, 5, 6)], {OpKind.CONV_TRANSPOSE}),
    "conv_transpose_groups": (nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2, dilation=1), [t(1, 4, 5, 5)], {OpKind.CONV_TRANSPOSE}),
    "batchnorm_standalone": (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)), [t(1, 4, 5, 5)], {OpKind.BATCH_NORM}),
    "instancenorm": (nn.InstanceNorm2d(4, affine=True), [t(2, 4, 5, 6)], {OpKind.INSTANCE_NORM}),
    "layernorm": (nn.LayerNorm(16), [t(2, 5, 16)], {OpKind.LAYER_NORM}),
    "relu6_leaky": (nn.Sequential(nn.ReLU6(), nn.LeakyReLU(0.2), nn.Hardtanh(-0.5, 0.5)), [t(1, 3, 4, 4)], {OpKind.CLIP, OpKind.LEAKY_RELU}),
    "sigmoid_tanh_relu": (Fn(lambda x: torch.tanh(torch.relu(x)) + torch.sigmoid(x)), [t(2, 7)], {OpKind.TANH, OpKind.SIGMOID, OpKind.RELU}),
    "silu_gelu": (nn.Sequential(nn.SiLU(), nn.GELU()), [t(2, 9)], {OpKind.SILU, OpKind.GELU}),
    "hard_activations": (nn.Sequential(nn.Hardswish(), nn.Hardsigmoid()), [t(2, 9)], {OpKind.HARD_SWISH, OpKind.HARD_SIGMOID}),
    "math": (Fn(lambda x: torch.erf(x) + torch.sqrt(x * x + 1.0) - torch.exp(-x) / 3.0 + x ** 2),
             [t(3, 4)], {OpKind.ERF, OpKind.SQRT, OpKind.EXP, OpKind.NEG, OpKind.POW, OpKind.MUL, OpKind.ADD, OpKind.SUB, OpKind.DIV}),
    "broadcast": (Fn(lambda a, b: (a - b) * b / (a.abs() + 1.0)), [t(2, 3, 4, 5), t(4, 1, seed=1)], {OpKind.SUB, OpKind.MUL, OpKind.DIV}),
    "maxpool": (nn.MaxPool2d(3, 2, 1), [t(1, 2, 9, 8)], {OpKind.MAX_POOL}),
    "maxpool_ceil": (nn.MaxPool2d(2, 2, ceil_mode=True), [t(1, 2, 7, 9)], {OpKind.MAX_POOL}),
    "avgpool": (nn.AvgPool2d(3, 2, 1, count_include_pad=False), [t(1, 2, 9, 8)], {OpKind.AVG_POOL}),
    "avgpool_include": (nn.AvgPool2d(2, 2), [t(1, 2, 8, 6)], {OpKind.AVG_POOL}),
    "global_avgpool": (nn.AdaptiveAvgPool2d(1), [t(2, 5, 6, 7)], {OpKind.GLOBAL_AVG_POOL}),
    "concat_split": (Fn(lambda x: torch.cat(list(torch.split(x, [2, 3, 1], 1))[::-1], 1)), [t(1, 6, 3, 3)], {OpKind.CONCAT, OpKind.SPLIT}),
    "slice": (Fn(lambda x: x[:, 1:5:2, -3:]), [t(2, 6, 5)], {OpKind.SLICE}),
    "pad_modes": (Fn(lambda x: F.pad(F.pad(F.pad(x, (1, 2, 0, 1), mode="reflect"), (2, 0, 1, 1), mode="replicate"), (1, 1, 1, 1, 1, 0), value=0.5)),
                  [t(1, 2, 5, 6)], {OpKind.PAD}),
    "resize_nearest": (nn.Upsample(scale_factor=2, mode="nearest"), [t(1, 3, 4, 5)], {OpKind.RESIZE}),
    "resize_size": (Fn(lambda x: F.interpolate(x, size=(7, 9), mode="nearest")), [t(1, 2, 4, 3)], {OpKind.RESIZE}),
    "resize_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), [t(1, 3, 4, 5)], {OpKind.RESIZE}),
    "resize_bilinear_corners": (Fn(lambda x: F.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True)), [t(1, 3, 4, 5)], {OpKind.RESIZE}),
    "gather": (Fn(lambda x: x[:, 0] + x[:, torch.tensor([2, 1])].sum(1)), [t(2, 3, 4)], {OpKind.GATHER}),
    "layout": (Fn(lambda x: torch.flatten(x.permute(0, 2, 1, 3).unsqueeze(1).squeeze(1), 1).reshape(2, -1, 4)),
               [t(2, 3, 4, 4)], {OpKind.TRANSPOSE, OpKind.RESHAPE, OpKind.FLATTEN}),
    "squeeze_unsqueeze": (Fn(lambda x: torch.squeeze(x, 1).unsqueeze(0) * 2.0), [t(3, 1, 4)], {OpKind.SQUEEZE, OpKind.UNSQUEEZE}),
    "linear_2d": (nn.Linear(12, 5), [t(3, 12)], {OpKind.LINEAR}),
    "linear_3d": (nn.Linear(12, 5), [t(2, 3, 12)], {OpKind.LINEAR}),
    "matmul_softmax": (Fn(lambda a, b: torch.softmax(a @ b.transpose(-1, -2), -1) @ b), [t(2, 4, 6), t(2, 5, 6, seed=1)], {OpKind.MATMUL, OpKind.SOFTMAX}),
    "reductions": (Fn(lambda x: x.mean(dim=(-1,), keepdim=True) + x.sum(dim=(1, 2), keepdim=True) - x.amax(dim=1, keepdim=True)),
                   [t(2, 3, 4)], {OpKind.REDUCE_MEAN, OpKind.REDUCE_SUM, OpKind.REDUCE_MAX}),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_case(case: str) -> None:
    module, inputs, kinds = TORCH_CASES[case]
    module = module.eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    graph = from_torch(module, inputs, name=case)
    assert kinds <= {n.op for n in graph.nodes}, f"expected {kinds}, got {[n.op for n in graph.nodes]}"
    values = check_graph(graph, inputs)
    with torch.no_grad():
        expected = module(*inputs)
    got = values[graph.outputs[0]]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _onnx_model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "case", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(value), name)


RNG = np.random.default_rng(0)
ONNX_CASES = {
    "identity": (_onnx_model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])], []),
                 {OpKind.IDENTITY}),
    "gemm_transposes": (_onnx_model([helper.make_node("Gemm", ["x", "b", "c"], ["y"], alpha=0.5, beta=2.0, transB=0)],
                                    [_vi("x", [3, 4])], [_vi("y", [3, 5])],
                                    [_init("b", RNG.standard_normal((4, 5)).astype(np.float32)),
                                     _init("c", RNG.standard_normal((1, 5)).astype(np.float32))]), {OpKind.LINEAR}),
    "conv_same_upper": (_onnx_model([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                                    [_vi("x", [1, 2, 7, 8])], [_vi("y", [1, 3, 4, 4])],
                                    [_init("w", RNG.standard_normal((3, 2, 4, 4)).astype(np.float32))]), {OpKind.CONV}),
    "pad_axes_opset18": (_onnx_model([helper.make_node("Pad", ["x", "p", "", "a"], ["y"], mode="edge")],
                                     [_vi("x", [1, 2, 4, 5])], [_vi("y", [1, 2, 7, 5])],
                                     [_init("p", np.array([1, 2], np.int64)), _init("a", np.array([2], np.int64))], opset=18),
                         {OpKind.PAD}),
    "reduce_split_opset18": (_onnx_model([helper.make_node("ReduceMean", ["x", "ax"], ["m"], keepdims=0),
                                          helper.make_node("Split", ["m"], ["s0", "s1"], axis=1, num_outputs=2),
                                          helper.make_node("Sub", ["s0", "s1"], ["y"])],
                                         [_vi("x", [2, 6, 3])], [_vi("y", [2, 3])],
                                         [_init("ax", np.array([-1], np.int64))], opset=18),
                             {OpKind.REDUCE_MEAN, OpKind.SPLIT, OpKind.SUB}),
    "batchnorm_into_conv": (_onnx_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 2, 1]),
                                         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                                        [_vi("x", [1, 2, 6, 6])], [_vi("y", [1, 4, 6, 6])],
                                        [_init("w", RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)),
                                         _init("s", RNG.uniform(0.5, 1.5, 4).astype(np.float32)),
                                         _init("b", RNG.standard_normal(4).astype(np.float32)),
                                         _init("m", RNG.standard_normal(4).astype(np.float32)),
                                         _init("v", RNG.uniform(0.5, 1.5, 4).astype(np.float32))]), {OpKind.CONV}),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_case(case: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    model, kinds = ONNX_CASES[case]
    graph = from_onnx_model(model, name=case)
    assert kinds <= {n.op for n in graph.nodes}
    x = [torch.randn(s.shape, generator=torch.Generator().manual_seed(3)) for s in graph.inputs]
    values = check_graph(graph, x)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {s.name: v.numpy() for s, v in zip(graph.inputs, x)})[0]
    np.testing.assert_allclose(values[graph.outputs[0]].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_every_registered_kind_has_a_conformance_case() -> None:
    # Runs last in this file (pytest keeps definition order): all cases above have run.
    missing = set(REGISTRY) - COVERED
    if len(COVERED) < 5:
        pytest.skip("conformance cases were deselected; coverage cannot be judged")
    assert not missing, f"op kinds without a conformance case: {sorted(k.value for k in missing)}"


def test_pointwise_conv_runs_as_a_gemm_on_small_bf16_channels_last_images() -> None:
    from codl.ops.conv import GEMM_1X1_MAX_PIXELS

    node = Node("n", OpKind.CONV, ["x", "w", "b"], ["y"],
                {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1})
    kernel = family(OpKind.CONV).kernel(node)
    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(24, 16, 1, 1, generator=gen).bfloat16(), torch.randn(24, generator=gen).bfloat16()
    for side in (7, 28):
        x = torch.randn(2, 16, side, side, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
        got = kernel(x, w, b)
        assert got.shape == (2, 24, side, side) and got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got.float(), F.conv2d(x.float(), w.float(), b.float()), rtol=2e-2, atol=5e-2)
        if side * side < GEMM_1X1_MAX_PIXELS:  # the GEMM over pixels, exactly
            want = F.linear(x.permute(0, 2, 3, 1).reshape(-1, 16), w.reshape(24, 16), b).view(2, side, side, 24)
            assert torch.equal(got, want.permute(0, 3, 1, 2))
        else:
            assert torch.equal(got, F.conv2d(x, w, b))
    x32 = torch.randn(1, 16, 7, 7, generator=gen)  # fp32 NCHW: the library's conv
    assert torch.equal(kernel(x32, w.float(), b.float()), F.conv2d(x32, w.float(), b.float()))


def test_the_backend_is_chosen_when_a_kernel_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv kernel made for a backend calls that backend's kernels, from any thread,
    with no per-call state: codl's own CPU path, codl's GPU kernels tiled for the
    backend's SMs (faked here: the CPU has no Triton), or the library."""
    import threading

    from codl.ops import LIBRARY, Backend, own_cpu, own_kernels

    attrs = {"kernel": [3, 3], "strides": [2, 2], "pads": [0, 1, 1, 1], "dilations": [1, 1], "group": 1}
    node, calls = Node("n", OpKind.CONV, ["x", "w", "b"], ["y"], attrs), []
    cpu_conv = own_cpu.conv2d
    monkeypatch.setattr(own_cpu, "conv2d", lambda *a: calls.append(("cpu", a[4])) or cpu_conv(*a))
    monkeypatch.setattr(own_kernels, "supports", lambda x, groups, w: True)
    monkeypatch.setattr(own_kernels, "conv2d", lambda x, w, b, stride, pads, dil, groups, out_hw, units:
                        calls.append(("gpu", pads, out_hw, units)) or torch.zeros(1))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 9, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(6, 4, 3, 3, generator=gen), torch.randn(6, generator=gen)
    want = F.conv2d(F.pad(x, (1, 1, 0, 1)), w, b, 2)
    conv = family(OpKind.CONV)
    results: list = []
    worker = threading.Thread(target=lambda: results.append(conv.kernel(node, Backend(own_cpu=True))(x, w, b)))
    worker.start()
    worker.join()
    torch.testing.assert_close(results[0], want, rtol=1e-5, atol=1e-5)
    assert calls == [("cpu", (0, 1, 1, 1))]
    conv.kernel(node, Backend(gpu_units=8))(x, w, b)
    assert calls[1:] == [("gpu", (0, 1), (4, 4), 8)]
    torch.testing.assert_close(conv.kernel(node, LIBRARY)(x, w, b), want, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2
    assert CPU.backend == LIBRARY and Processor.parse("cpu", own_kernels=True).backend == Backend(own_cpu=True)
    linear = Node("l", OpKind.LINEAR, ["x", "w"], ["y"], {})
    assert family(OpKind.LINEAR).kernel(linear) is F.linear
    assert family(OpKind.LINEAR).kernel(linear, Backend(gpu_units=8)) is not F.linear
