"""Hierarchical modules: one class per block, `repeat` as an nn.ModuleList, state-dict keys by instance path.

The point of the hierarchy is that a hand-written PyTorch model's state dict loads into the generated
module as it is. So each test here builds the state dict by hand (the keys and `[out, in]` shapes a torch
author would write, random values), loads it with strict=True, and compares the outputs with the same
computation written with torch.nn.functional; the source text is checked for the structure (classes,
loops) that makes the module readable. Every target (torch, triton under the interpreter, onnx) must
give the same numbers from the same weights.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from specc.codegen import backends
from specc.diagnostics import SpeccError
from targets import compile_graph, outputs_on_every_target, python_module

TOL = dict(atol=1e-5, rtol=1e-5)


def _graph(tmp_path, text: str, name: str = "m", **params):
    spec = tmp_path / f"{name}.nnspec"
    spec.write_text(text)
    return compile_graph(spec, params=params or None)


def _source(graph, target: str = "torch") -> str:
    return backends()[target].emit(graph).data.decode()


def _error(tmp_path, text: str) -> SpeccError:
    with pytest.raises(SpeccError) as info:
        _graph(tmp_path, text)
    return info.value


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict as someone porting weights would have it: the keys and shapes they expect."""
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=g) * 0.5 for key, shape in shapes.items()}


def _lin(x, state, key):
    return F.linear(x, state[f"{key}.weight"], state.get(f"{key}.bias"))


def _linear_keys(key: str, out: int, inp: int) -> dict[str, tuple[int, ...]]:
    return {f"{key}.weight": (out, inp), f"{key}.bias": (out,)}


def _check_every_target(graph, inputs, state, tmp_path, expected) -> None:
    """Every target's outputs equal the hand computation (and so each other)."""
    expected = expected if isinstance(expected, tuple) else (expected,)
    for target, outputs in outputs_on_every_target(graph, inputs, state, tmp_path).items():
        assert len(outputs) == len(expected), target
        for got, want in zip(outputs, expected):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"{target}: {m}")


# ---------------------------------------------------------------------------------------------- keys

KEYS = """block mlp(x, d: int) {
    fc = linear(x, d)
    return relu(fc)
}
block outer(x, d: int) {
    inner = mlp(x, d)
    return linear(relu(inner), d) as proj
}
model m(d: int = 4) {
    input x: f32[B, 3]
    first = linear(x, d)
    h = relu(linear(first, d))
    a = mlp(h, d)
    b = mlp(a, d) as named
    c = repeat 2 { mlp(_, d) } (b) as layers
    e = outer(c, d) as "output"
    output y = linear(e, 5) as "0"
}
"""

KEYS_SHAPES = {
    **_linear_keys("first", 4, 3),       # the whole right-hand side: the target's name
    **_linear_keys("h_linear", 4, 4),    # nested in relu(...): `<target>_<op>`
    **_linear_keys("a.fc", 4, 4),        # a block instance named after its target
    **_linear_keys("named.fc", 4, 4),    # `as name`
    **_linear_keys("layers.0.fc", 4, 4),  # repeat iterations
    **_linear_keys("layers.1.fc", 4, 4),
    **_linear_keys("output.inner.fc", 4, 4),  # `as "output"` (a keyword), holding a nested block
    **_linear_keys("output.proj", 4, 4),
    **_linear_keys("0", 5, 4),           # `as "0"`: an index, as nn.Sequential keys are
}


def _keys_reference(x, s):
    first = _lin(x, s, "first")
    h = F.relu(_lin(first, s, "h_linear"))
    a = F.relu(_lin(h, s, "a.fc"))
    b = F.relu(_lin(a, s, "named.fc"))
    c = F.relu(_lin(F.relu(_lin(b, s, "layers.0.fc")), s, "layers.1.fc"))
    inner = F.relu(_lin(c, s, "output.inner.fc"))
    e = _lin(F.relu(inner), s, "output.proj")
    return _lin(e, s, "0")


@pytest.fixture(scope="module")
def keys_graph(tmp_path_factory):
    return _graph(tmp_path_factory.mktemp("keys"), KEYS)


def test_state_dict_keys_follow_the_names_in_the_spec(keys_graph):
    _, model = python_module(keys_graph, "torch")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == KEYS_SHAPES


def test_a_hand_built_state_dict_loads_strictly_and_computes_the_same(keys_graph, tmp_path):
    state = _random_state(KEYS_SHAPES)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    _check_every_target(keys_graph, [x], state, tmp_path, _keys_reference(x, state))


def test_layers_named_like_an_index_or_a_keyword_live_in_an_nn_module_dict(keys_graph):
    source = _source(keys_graph)
    assert "class M(nn.ModuleDict):" in source  # holds "0", which is not an attribute name
    assert re.search(r"self\['0'\] = nn\.Linear\(4, 5\)", source)
    assert re.search(r"= self\['0'\]\(", source)
    assert re.search(r"self\.output = Outer\(", source)  # `output` is a keyword of the spec, not of Python


def test_one_class_per_block_with_nested_instances(keys_graph):
    source = _source(keys_graph)
    outer = source[source.index("class Outer("):]
    outer = outer[:outer.index("\nclass ")]
    assert re.search(r"self\.inner = Mlp\d*\(", outer)
    assert re.search(r"self\.proj = nn\.Linear\(", outer)
    # the model's instances `a` and `named` are the same code, hence one class
    a = re.search(r"self\.a = (\w+)\(", source).group(1)
    named = re.search(r"self\.named = (\w+)\(", source).group(1)
    assert a == named


def test_equal_instances_at_different_depths_share_a_class(keys_graph):
    source = _source(keys_graph)
    assert source.count("class Mlp") == 1, re.findall(r"class Mlp\w*", source)


# ---------------------------------------------------------------------------------------------- repeat

LOOP = """block mlp(x, d: int) {
    fc = linear(x, d)
    return relu(fc)
}
model m() {
    input x: f32[B, 4]
    output y = repeat 3 { mlp(_, 4) } (x) as layers
}
"""


def test_a_repeat_of_a_block_runs_as_a_loop_over_a_module_list(tmp_path):
    graph = _graph(tmp_path, LOOP)
    source = _source(graph)
    assert re.search(r"self\.layers = nn\.ModuleList\(\[Mlp\([^)]*\) for _ in range\(3\)\]\)", source)
    assert re.search(r"for \w+ in self\.layers:", source)
    assert "self.layers[" not in source
    assert source.count("class ") == 2  # Mlp and the model
    shapes = {k: v for i in range(3) for k, v in _linear_keys(f"layers.{i}.fc", 4, 4).items()}
    state = _random_state(shapes)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    want = x
    for i in range(3):
        want = F.relu(_lin(want, state, f"layers.{i}.fc"))
    _check_every_target(graph, [x], state, tmp_path, want)


UNROLLED = """model m() {
    input x: f32[B, 4]
    input z: f32[B, 4]
    output y = repeat i in 3 { linear(_, 4) + z if i == 1 else linear(_, 4) } (x) as layers
}
"""


def test_a_repeat_whose_iterations_take_different_arguments_is_unrolled(tmp_path):
    """Iteration 1 alone reads `z`: the iterations are not one loop body, so each is called by index."""
    graph = _graph(tmp_path, UNROLLED)
    source = _source(graph)
    assert re.search(r"self\.layers = nn\.ModuleList\(\[(\w+)\(\), (\w+)\(\), \1\(\)\]\)", source)
    assert "for " not in source.split("def forward", 1)[1].split("Model =")[0].split("class M(")[-1]
    for i in range(3):
        assert f"self.layers[{i}](" in source
    shapes = {**_linear_keys("layers.0.out", 4, 4), **_linear_keys("layers.1.out_linear", 4, 4),
              **_linear_keys("layers.2.out", 4, 4)}
    _, model = python_module(graph, "torch")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    state = _random_state(shapes)
    g = torch.Generator().manual_seed(3)
    x, z = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    want = _lin(_lin(_lin(x, state, "layers.0.out"), state, "layers.1.out_linear") + z, state, "layers.2.out")
    _check_every_target(graph, [x, z], state, tmp_path, want)


HOISTED = """model m() {
    input x: f32[B, 4]
    h = repeat 3 { sigmoid(_) * 2.0 } (x) as layers
    a = sigmoid(x) * 2.0
    output y = h + a
}
"""

DEAD = """model m() {
    input x: f32[B, 4]
    output y = repeat 3 { linear(x, 4) } (x) as layers
}
"""


def test_a_repeat_whose_first_iteration_is_shared_with_the_parent_still_runs(tmp_path):
    graph = _graph(tmp_path, HOISTED)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(4))
    h = x
    for _ in range(3):
        h = torch.sigmoid(h) * 2.0
    _check_every_target(graph, [x], None, tmp_path, h + torch.sigmoid(x) * 2.0)


def test_a_repeat_whose_earlier_iterations_are_unused_still_runs(tmp_path):
    graph = _graph(tmp_path, DEAD)
    _, model = python_module(graph, "torch")
    state = model.state_dict()
    assert set(state) == {"layers.2.out.weight", "layers.2.out.bias"}
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    _check_every_target(graph, [x], state, tmp_path, _lin(x, state, "layers.2.out"))


VARIANTS = """block unit(x, d: int, project: bool) {
    h = linear(x, d) as fc
    return linear(h, d) as proj if project else relu(h)
}
model m() {
    input v: f32[B, 3]
    output y = repeat i in 3 { unit(_, 4, i == 0) } (v) as units
}
"""


def test_repeat_iterations_that_differ_are_a_module_list_of_their_classes(tmp_path):
    graph = _graph(tmp_path, VARIANTS)
    source = _source(graph)
    listing = re.search(r"self\.units = nn\.ModuleList\(\[(\w+)\([^)]*\), (\w+)\([^)]*\), (\w+)\([^)]*\)\]\)", source)
    assert listing, source
    first, second, third = listing.groups()
    assert first != second == third and first.startswith("Unit") and second.startswith("Unit")
    assert source.count("class Unit") == 2
    assert re.search(r"for \w+ in self\.units:", source)  # each iteration still feeds the next
    shapes = {**_linear_keys("units.0.fc", 4, 3), **_linear_keys("units.0.proj", 4, 4),
              **_linear_keys("units.1.fc", 4, 4), **_linear_keys("units.2.fc", 4, 4)}
    state = _random_state(shapes)
    v = torch.randn(2, 3, generator=torch.Generator().manual_seed(6))
    want = _lin(_lin(v, state, "units.0.fc"), state, "units.0.proj")
    want = F.relu(_lin(F.relu(_lin(want, state, "units.1.fc")), state, "units.2.fc"))
    _check_every_target(graph, [v], state, tmp_path, want)


SIZES = """block basic_block(x: f32[N, inplanes, H, W], planes: int) {
    out = relu(batchnorm(conv2d(x, planes, 3, padding=1, bias=false) as conv1) as bn1)
    return out
}
model m() {
    input images: f32[B, 2, 6, 6]
    a = basic_block(images, 4)
    output y = basic_block(a, 6) as b
}
"""


def _bn_keys(key: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{key}.weight": (c,), f"{key}.bias": (c,), f"{key}.running_mean": (c,), f"{key}.running_var": (c,),
            f"{key}.num_batches_tracked": ()}


def test_instances_that_differ_only_in_sizes_share_a_class_with_constructor_arguments(tmp_path):
    graph = _graph(tmp_path, SIZES)
    source = _source(graph)
    assert source.count("class BasicBlock") == 1
    assert "def __init__(self, inplanes: int, planes: int) -> None:" in source
    assert "nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)" in source
    assert "self.a = BasicBlock(inplanes=2, planes=4)" in source
    assert "self.b = BasicBlock(inplanes=4, planes=6)" in source
    shapes = {"a.conv1.weight": (4, 2, 3, 3), **_bn_keys("a.bn1", 4),
              "b.conv1.weight": (6, 4, 3, 3), **_bn_keys("b.bn1", 6)}
    state = _random_state(shapes)
    for key in ("a.bn1.running_var", "b.bn1.running_var"):
        state[key] = state[key].abs() + 0.5
    state["a.bn1.num_batches_tracked"] = state["b.bn1.num_batches_tracked"] = torch.tensor(0)
    images = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(7))

    def block(x, key):
        h = F.conv2d(x, state[f"{key}.conv1.weight"], padding=1)
        return F.relu(F.batch_norm(h, state[f"{key}.bn1.running_mean"], state[f"{key}.bn1.running_var"],
                                   state[f"{key}.bn1.weight"], state[f"{key}.bn1.bias"], eps=1e-5))

    _check_every_target(graph, [images], state, tmp_path, block(block(images, "a"), "b"))


ANONYMOUS = """model m() {
    input x: f32[B, 5]
    h = repeat 2 { relu(linear(_, 5)) } (x) as anon
    output y = relu(repeat 0 { linear(_, 7) } (h) as empty)
}
"""


def test_a_repeat_body_that_is_not_a_block_call_is_a_layer_class_and_repeat_0_is_nothing(tmp_path):
    graph = _graph(tmp_path, ANONYMOUS)
    source = _source(graph)
    assert re.search(r"class AnonLayer\(nn\.Module\):", source)
    assert re.search(r"self\.anon = nn\.ModuleList\(\[AnonLayer\(\) for _ in range\(2\)\]\)", source)
    assert "empty" not in source  # no module and no loop for zero iterations
    shapes = {**_linear_keys("anon.0.out_linear", 5, 5), **_linear_keys("anon.1.out_linear", 5, 5)}
    _, model = python_module(graph, "torch")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    state = _random_state(shapes)
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(8))
    want = F.relu(_lin(F.relu(_lin(x, state, "anon.0.out_linear")), state, "anon.1.out_linear"))
    _check_every_target(graph, [x], state, tmp_path, F.relu(want))


# ---------------------------------------------------------------------------------------------- CSE

SHARED = """block blk(x, w) {
    return relu(matmul(x, transpose(w, 0, 1)))
}
model m() {
    input x: f32[B, 4]
    w = parameter([4, 4])
    output y = repeat 3 { blk(_, w) } (x) as layers
}
"""


def test_a_value_every_iteration_computes_from_outside_operands_is_computed_once_in_the_parent(tmp_path):
    graph = _graph(tmp_path, SHARED)
    source = _source(graph)
    assert source.count(".transpose(") == 1, source
    model_class = source[source.index("class M("):]
    assert ".transpose(0, 1)" in model_class  # in the parent, passed to each iteration
    assert re.search(r"for \w+ in self\.layers:", source)
    state = _random_state({"w": (4, 4)})
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(9))
    want = x
    for _ in range(3):
        want = F.relu(want @ state["w"].T)
    _check_every_target(graph, [x], state, tmp_path, want)


# ---------------------------------------------------------------------------------------------- typed tensors

TYPED = """block heads_first(x: f32[B, T, D], heads: int) {
    q = reshape(x, [B, T, heads, -1])
    return reshape(transpose(q, 1, 2), [B, heads, -1])
}
model m() {
    input x: f32[N, L, 64]
    output y = heads_first(x, 4) as split
}
"""


def test_typed_tensor_parameters_bind_the_callers_dims(tmp_path):
    graph = _graph(tmp_path, TYPED)
    for n, length in ((2, 3), (1, 5)):
        x = torch.randn(n, length, 64, generator=torch.Generator().manual_seed(n))
        want = x.reshape(n, length, 4, 16).transpose(1, 2).reshape(n, 4, -1)
        for target in ("torch", "triton"):
            _, model = python_module(graph, target)
            torch.testing.assert_close(model(x), want, **TOL)
    _check_every_target(graph, [x], None, tmp_path, want)


def _typed_error(tmp_path, call: str, params: str = "x: f32[B, T, D], heads: int",
                 inputs: str = "x: f32[N, L, 64]") -> SpeccError:
    return _error(tmp_path, f"block b({params}) {{\n    return reshape(x, [B, T, heads, -1])\n}}\n"
                            f"model m() {{\n    input {inputs}\n    output y = {call}\n}}\n")


@pytest.mark.parametrize("call, params, col, words", [
    ("b(x[:, 0], 4)", "x: f32[B, T, D], heads: int", 18, ["f32[3 dims]", "f32[N, 64]"]),   # wrong rank
    ("b(x > 0.0, 4)", "x: f32[B, T, D], heads: int", 18, ["f32[3 dims]", "bool[N, L, 64]"]),  # wrong dtype
    ("b(x, 4)", "x: f32[B, T, 32], heads: int", 18, ["dim 32", "64"]),  # a declared number that differs
    ("b(3, 4)", "x: f32[B, T, D], heads: int", 18, ["declared a tensor", "an int"]),  # not a tensor
    ("b(x, x)", "x: f32[B, T, D], heads: int", 21, ["`heads`", "a tensor"]),  # a tensor for an int
])
def test_typed_tensor_parameter_errors_are_located_at_the_argument(tmp_path, call, params, col, words):
    err = _typed_error(tmp_path, call, params)
    assert err.code == "E0210"
    assert (err.span.line, err.span.col) == (6, col), err.render()
    for word in words:
        assert word in err.message, err.message
    assert any("called here" in n.message and n.span.line == 6 for n in err.notes)


def test_two_typed_parameters_sharing_a_dim_name_must_agree(tmp_path):
    err = _error(tmp_path, "block b(x: f32[B, D], y: f32[B, D]) {\n    return x + y\n}\n"
                           "model m() {\n    input x: f32[N, 8]\n    input z: f32[N, 4]\n    output y = b(x, z)\n}\n")
    assert err.code == "E0210" and (err.span.line, err.span.col) == (7, 21)
    assert "`y`" in err.message and "8" in err.message and "4" in err.message


def test_an_int_parameter_named_like_a_bound_dim_must_agree_with_it(tmp_path):
    err = _error(tmp_path, "block b(x: f32[B, d], d: int) {\n    return linear(x, d)\n}\n"
                           "model m() {\n    input x: f32[N, 8]\n    output y = b(x, 4)\n}\n")
    assert err.code == "E0210" and err.span.line == 6


# ---------------------------------------------------------------------------------------------- `as` errors

def _as_error(tmp_path, expr: str, before: str = "") -> SpeccError:
    return _error(tmp_path, f"model m() {{\n    input x: f32[N, 4]\n{before}    output y = {expr}\n}}\n")


@pytest.mark.parametrize("expr, col", [("x as foo", 16), ("(x + x) as foo", 17), ("3 as foo", 16)])
def test_as_on_something_that_is_not_a_call_is_e0230(tmp_path, expr, col):
    err = _as_error(tmp_path, expr)
    assert err.code == "E0230" and (err.span.line, err.span.col) == (3, col), err.render()


@pytest.mark.parametrize("expr, name, words", [
    ('relu(x) as "a.b"', '"a.b"', "cannot name a layer"),
    ('relu(x) as ""', '""', "cannot name a layer"),
    ('linear(x, 4) as "01"', '"01"', "cannot name a layer"),
    ("relu(x) as forward", "forward", "nn.Module uses that name"),
    ('relu(x) as "forward"', '"forward"', "nn.Module uses that name"),
    ('linear(x, 4) as "training"', '"training"', "nn.Module uses that name"),
    ('linear(x, 4) as "parameters"', '"parameters"', "nn.Module uses that name"),
    ('parameter([4]) as "0"', '"0"', "cannot name a parameter"),
])
def test_as_with_a_name_a_module_cannot_have_is_e0231(tmp_path, expr, name, words):
    err = _as_error(tmp_path, expr)
    assert err.code == "E0231" and err.span.line == 3, err.render()
    assert err.span.col == 16 + expr.index(name), err.render()
    assert words in err.message


def test_a_name_taken_twice_in_one_block_is_e0231_at_the_second(tmp_path):
    err = _error(tmp_path, "block b(x) {\n    a = linear(x, 4) as fc\n    return linear(a, 4) as fc\n}\n"
                           "model m() {\n    input x: f32[N, 4]\n    output y = b(x)\n}\n")
    assert err.code == "E0231" and (err.span.line, err.span.col) == (3, 28), err.render()
    assert any("called here" in n.message and n.span.line == 7 for n in err.notes)


def test_a_name_taken_twice_says_where_it_was_taken(tmp_path):
    err = _error(tmp_path, "block b(x) {\n    a = linear(x, 4) as fc\n    return linear(a, 4) as fc\n}\n"
                           "model m() {\n    input x: f32[N, 4]\n    output y = b(x)\n}\n")
    assert any(n.span.line == 2 for n in err.notes), err.render()


def test_the_same_name_in_two_instances_of_a_block_is_fine(tmp_path):
    graph = _graph(tmp_path, "block b(x) {\n    return linear(x, 4) as fc\n}\n"
                             "model m() {\n    input x: f32[N, 4]\n    a = b(x)\n    output y = b(a) as fc\n}\n")
    _, model = python_module(graph, "torch")
    assert set(model.state_dict()) == {"a.fc.weight", "a.fc.bias", "fc.fc.weight", "fc.fc.bias"}


NESTED = """block stage(x, d: int) {
    return repeat j in 2 { linear(_, d) as fc } (x) as blocks
}
model m() {
    input x: f32[B, 3]
    h = repeat i in 2 { stage(_, 4 + i) } (x) as "0"
    output y = repeat 2 { repeat 2 { relu(_) } (_) } (h) as deep
}
"""


def test_nested_repeats_nest_their_keys_and_loops(tmp_path):
    graph = _graph(tmp_path, NESTED)
    shapes = {**_linear_keys("0.0.blocks.0.fc", 4, 3), **_linear_keys("0.0.blocks.1.fc", 4, 4),
              **_linear_keys("0.1.blocks.0.fc", 5, 4), **_linear_keys("0.1.blocks.1.fc", 5, 5)}
    for target in ("torch", "triton"):
        source = _source(graph, target)
        assert re.search(r"self\['0'\] = nn\.ModuleList\(\[", source)
        assert re.search(r"for \w+ in self\['0'\]:", source)
        assert re.search(r"for \w+ in self\.blocks:", source)
        _, model = python_module(graph, target)
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes, target
    state = _random_state(shapes)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(10))
    h = x
    for i in range(2):
        for j in range(2):
            h = _lin(h, state, f"0.{i}.blocks.{j}.fc")
    _check_every_target(graph, [x], state, tmp_path, F.relu(h))


def test_the_triton_module_has_the_same_classes_and_keys(keys_graph):
    """Both Python targets build on one module tree: a torch checkpoint loads into either."""
    source = _source(keys_graph, "triton")
    assert "class Outer(" in source and "class M(nn.ModuleDict):" in source
    assert re.search(r"for \w+ in self\.layers:", source)
    _, model = python_module(keys_graph, "triton")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == KEYS_SHAPES


def test_a_symbolic_expand_inside_a_block_reads_the_size_from_its_own_argument(tmp_path):
    """expand reads a symbolic size from the model input that has it (OpDef.reads): inside a block's class
    that input arrives as the block's argument, under the block's name for it, not the model's."""
    graph = _graph(tmp_path, """block emb(x: f32[B, T, D]) {
    cls = parameter([1, 1, D])
    return concat([expand(cls, [B, -1, -1]), x], dim=1)
}
model m() {
    input pixels: f32[N, 4, 8]
    output y = emb(pixels)
}
""")
    x = torch.randn(3, 4, 8)
    state = {"y.cls": torch.randn(1, 1, 8)}  # the block instance is named after its target, `y`
    want = torch.cat([state["y.cls"].expand(3, -1, -1), x], dim=1)
    for target, (got,) in outputs_on_every_target(graph, [x], state, tmp_path).items():
        torch.testing.assert_close(got, want, msg=lambda m: f"{target}: {m}")


def test_a_repeat_body_reading_a_value_named_like_its_placeholder(tmp_path):
    """The body of a `repeat` takes `_` as `x`; a value it reads from around it that is also named `x`
    (here the model input, while `_` is `y`) gets another name, not a second argument `x`."""
    graph = _graph(tmp_path, "model m() {\n    input x: f32[N, 6]\n    input y: f32[N, 6]\n"
                             "    h = repeat 2 { relu(_) + x } (y)\n    output out = h\n}\n")
    x, y = torch.randn(3, 6), torch.randn(3, 6)
    want = torch.relu(torch.relu(y) + x) + x
    for target, (got,) in outputs_on_every_target(graph, [x, y], None, tmp_path).items():
        torch.testing.assert_close(got, want, msg=lambda m: f"{target}: {m}")
