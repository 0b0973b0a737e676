"""Every constant an emitted ONNX graph defines is read: onnxruntime warns "Removing initializer ... not
used by any node" at every load of a model that has one (found on the constraint layers' +-inf)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from specc.codegen import backends
from specc.compiler import compile_graph

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.nnspec"))


def _unread_constants(model: onnx.ModelProto) -> list[str]:
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    defined = [o for node in model.graph.node if node.op_type == "Constant" for o in node.output]
    defined += [init.name for init in model.graph.initializer]
    return sorted(name for name in defined if name not in read)


@pytest.mark.parametrize("spec", [s for s in SPECS if "generator" in s.stem], ids=lambda s: s.stem)
def test_constraint_layers_define_no_unread_constant(spec: Path):
    model = onnx.load_from_string(backends()["onnx"].emit(compile_graph(spec)).data)
    assert _unread_constants(model) == []


def test_a_layer_with_lower_bounds_only_defines_no_upper_infinity(tmp_path: Path):
    spec = tmp_path / "lo.nnspec"
    spec.write_text("model m() {\n    input x: f32[B, 2]\n    columns (a, b) = x\n"
                    "    output y = constrain(x) {\n        a >= 0\n        b >= a\n    }\n}\n")
    model = onnx.load_from_string(backends()["onnx"].emit(compile_graph(spec)).data)
    assert _unread_constants(model) == []
