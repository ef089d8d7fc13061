"""float32 -> float16 conversion of an exported ONNX graph, for the stand-in only.

Why not export in half precision from torch: torch 1.13 (our CPU machines) has no half-precision
convolution or GroupNorm on the CPU, and the same script must run here and on the GPU hosts.
Converting the exported graph instead gives the same fp16 model everywhere.

Rules (enough for the graphs gpu/standin exports, not a general converter):
- float graph inputs and outputs become float16 (the server converts at the boundary);
- float initializers and Constant tensors become float16, except the roi/scales inputs of Resize,
  which ONNX requires in float32;
- Cast(to=float) becomes Cast(to=float16), so the timestep path is float16 from the cast on (a
  real fp16 export keeps the sinusoid in float32: same cost, different rounding, irrelevant for
  random weights);
- value_info is dropped (it would still say float32); onnxruntime infers the types again.
"""
import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
# (op type, input index) pairs that must stay float32.
KEEP_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2)}


def _to_fp16(tensor: TensorProto) -> TensorProto:
    array = numpy_helper.to_array(tensor)
    converted = numpy_helper.from_array(np.clip(array, -65504, 65504).astype(np.float16), tensor.name)
    return converted


def convert_to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    keep = set()
    for node in graph.node:
        for index, name in enumerate(node.input):
            if (node.op_type, index) in KEEP_FLOAT32_INPUTS and name:
                keep.add(name)

    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == FLOAT:
            value.type.tensor_type.elem_type = FLOAT16

    for i, init in enumerate(graph.initializer):
        if init.data_type == FLOAT and init.name not in keep:
            graph.initializer[i].CopyFrom(_to_fp16(init))

    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_to_fp16(attr.t))
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_to_fp16(attr.t))
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16

    del graph.value_info[:]
    return model
