"""Read an ONNX graph without running it: inputs, outputs, and the global-average-pool + linear
head that Grad-CAM++ needs (:mod:`viewer.inference.gradcam`), for ``radview models add``.

The ``onnx`` package is imported lazily: it is a development tool, not part of the packaged
viewer, so only ``models add`` needs it. Heads are matched as the common exporters write them:
``GlobalAveragePool`` (torch's legacy exporter) or ``ReduceMean`` over H and W (its dynamo
exporter, axes as an input from opset 18), optionally ``Flatten``/``Reshape``/``Squeeze``, then
``Gemm`` or ``MatMul`` (+ ``Add``). A match is only a candidate: ``models add`` keeps it when it
reproduces the graph's logits on test inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ModelAddError", "TensorInfo", "GraphInfo", "LinearHead", "load_onnx", "inspect_graph",
           "find_gap_linear_head", "with_output", "uses_external_data"]

_PASS_THROUGH = ("Flatten", "Reshape", "Squeeze", "Identity")

class ModelAddError(ValueError):
    """The model or an option cannot be used; the message says which and what was expected."""



def _onnx() -> ModuleType:
    try:
        import onnx
    except ImportError as exc:
        raise ModelAddError("radview models add needs the onnx package (pip install onnx)") from exc
    return onnx


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, shape (ints, symbolic names or ``None``) and type."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str

    def describe(self) -> str:
        dims = "?" if self.shape is None else "(" + ", ".join(
            "?" if d is None else str(d) for d in self.shape) + ")"
        return f"{self.name} {dims} {self.dtype}"


@dataclass(frozen=True)
class GraphInfo:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    opset: int


@dataclass(frozen=True)
class LinearHead:
    """``logits = weight @ mean_hw(activations) + bias``, found in the graph."""

    activations: str  # the tensor fed to the global average pool
    weight: np.ndarray  # (n_classes, C)
    bias: np.ndarray  # (n_classes,)
    path: tuple[str, ...]  # op types from the pool to the logits, e.g. GlobalAveragePool, Flatten, Gemm


def load_onnx(path: Path) -> Any:
    """The ONNX model at ``path`` (a clear :class:`ModelAddError` when it is not one)."""
    onnx = _onnx()
    if not path.is_file():
        raise ModelAddError(f"MODEL: {path.name} is not a file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        raise ModelAddError(f"MODEL: {path.name} is not a valid ONNX model "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return model


def _tensor_info(value_info: Any) -> TensorInfo:
    onnx = _onnx()
    tt = value_info.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "unknown"
    shape: tuple[int | str | None, ...] | None = None
    if tt.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tt.shape.dim)
    return TensorInfo(value_info.name, shape, dtype)


def inspect_graph(model: Any) -> GraphInfo:
    """Inputs (initializers excluded), outputs and the default-domain opset of ``model``."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphInfo(tuple(_tensor_info(v) for v in graph.input if v.name not in inits),
                     tuple(_tensor_info(v) for v in graph.output), int(opset))


# ---- the head ------------------------------------------------------------------------------
class _Graph:
    def __init__(self, model: Any) -> None:
        onnx = _onnx()
        self.to_array = onnx.numpy_helper.to_array
        self.attr = onnx.helper.get_attribute_value
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consts = {i.name: i for i in model.graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            return np.asarray(self.to_array(self.consts[name]))
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            return None if value is None else np.asarray(self.to_array(self.attr(value)))
        if node.op_type in ("Identity", "Transpose"):
            inner = self.const(node.input[0])
            if inner is None or node.op_type == "Identity":
                return inner
            perm = self.attrs(node).get("perm")
            return np.transpose(inner, perm)
        return None

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.attr(a) for a in node.attribute}

    def op(self, name: str) -> str:
        node = self.producer.get(name)
        return "a graph input" if node is None else node.op_type


def _linear(g: _Graph, logits: str) -> tuple[str, np.ndarray, np.ndarray, str]:
    """``(features, weight (n, C), bias (n,), op)`` of the linear layer producing ``logits``."""
    node = g.producer.get(logits)
    why = "the logits are not a linear function of a global average pool: "
    if node is None:
        raise ModelAddError(why + f"the output {logits!r} is a graph input")
    if node.op_type in ("Softmax", "LogSoftmax", "Sigmoid"):
        before = g.op(node.input[0])
        raise ModelAddError(why + f"found {node.op_type} after {before} (export the raw scores: "
                            f"radview applies the {'sigmoid' if node.op_type == 'Sigmoid' else 'softmax'} itself)")
    if node.op_type == "Gemm":
        a = g.attrs(node)
        w = g.const(node.input[1])
        if w is None or a.get("transA", 0):
            raise ModelAddError(why + "the Gemm's weight is not a constant" if w is None
                                else why + "the Gemm transposes its input (transA)")
        w = w if a.get("transB", 0) else w.T
        b = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        bias = (np.zeros(w.shape[0]) if b is None
                else np.broadcast_to(b.reshape(-1), (w.shape[0],)) * a.get("beta", 1.0))
        return node.input[0], w * a.get("alpha", 1.0), np.asarray(bias), "Gemm"
    bias_v: np.ndarray | None = None
    op = node.op_type
    if node.op_type == "Add":
        for i in (0, 1):
            c = g.const(node.input[i])
            inner = g.producer.get(node.input[1 - i])
            if c is not None and inner is not None and inner.op_type == "MatMul":
                bias_v, node, op = c, inner, "MatMul+Add"
                break
        else:
            raise ModelAddError(why + f"the output {logits!r} comes from Add of "
                                f"{g.op(node.input[0])} and {g.op(node.input[1])} (expected "
                                "MatMul + a constant bias)")
    if node.op_type == "MatMul":
        w = g.const(node.input[1])
        if w is None or w.ndim != 2:
            raise ModelAddError(why + "the MatMul's weight is not a constant matrix")
        n = w.shape[1]
        bias = np.zeros(n) if bias_v is None else np.broadcast_to(bias_v.reshape(-1), (n,))
        return node.input[0], w.T, np.asarray(bias), op
    raise ModelAddError(why + f"the output {logits!r} is produced by {node.op_type} "
                        "(expected Gemm, MatMul or MatMul + Add)")


def _pool(g: _Graph, features: str) -> tuple[str, list[str]]:
    """Walk back from the linear layer's input through Flatten/Reshape/Squeeze to the pool."""
    path: list[str] = []
    name = features
    why = "the logits are not a linear function of a global average pool: "
    for _ in range(8):
        node = g.producer.get(name)
        if node is None:
            raise ModelAddError(why + "the linear layer's input is a graph input")
        if node.op_type in _PASS_THROUGH:
            path.insert(0, node.op_type)
            name = node.input[0]
            continue
        if node.op_type == "GlobalAveragePool":
            return node.input[0], ["GlobalAveragePool", *path]
        if node.op_type == "ReduceMean":
            a = g.attrs(node)
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                c = g.const(node.input[1])
                axes = None if c is None else c.reshape(-1).tolist()
            if axes is not None and {int(x) % 4 for x in axes} == {2, 3}:
                return node.input[0], ["ReduceMean", *path]
            raise ModelAddError(why + f"found ReduceMean over axes {axes} (expected the spatial "
                                "axes 2 and 3 of N x C x H x W)")
        found = " after ".join(reversed([node.op_type, *path]))
        raise ModelAddError(why + f"found {found} before the linear layer (expected "
                            "GlobalAveragePool or ReduceMean over H and W, optionally followed by "
                            "Flatten, Reshape or Squeeze)")
    raise ModelAddError(why + "too many reshapes between the pool and the linear layer")


def find_gap_linear_head(model: Any, logits: str) -> LinearHead:
    """The GAP + linear head producing ``logits``; raises :class:`ModelAddError` saying why not."""
    g = _Graph(model)
    features, weight, bias, op = _linear(g, logits)
    activations, path = _pool(g, features)
    return LinearHead(activations, np.asarray(weight, np.float64), np.asarray(bias, np.float64),
                      (*path, op))


def with_output(model: Any, tensor: str, name: str) -> Any:
    """A copy of ``model`` with ``tensor`` also exposed as graph output ``name`` (an Identity)."""
    onnx = _onnx()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    elem = onnx.TensorProto.FLOAT
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        vi = next((v for v in inferred.graph.value_info if v.name == tensor), None)
        if vi is not None and vi.type.tensor_type.elem_type:
            elem = vi.type.tensor_type.elem_type
    except Exception:  # shape inference is a nicety: the output type defaults to float
        pass
    copy.graph.node.append(onnx.helper.make_node("Identity", [tensor], [name],
                                                 name=f"radview_{name}"))
    copy.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return copy


def uses_external_data(path: Path) -> bool:
    """The graph keeps its weights in separate files (copying the .onnx alone would break it)."""
    onnx = _onnx()
    try:
        bare = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in bare.graph.initializer)
