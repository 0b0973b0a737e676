"""Compression transforms: IR rewrites plus the matching conversion of dense weights.

A `compress NAME = MODEL { transform(args) on SELECTOR ... }` section is an
ordered list of stages. Each stage selects layers of the model as rewritten by
the stages before it (see `select`), and its transform rewrites each selected
layer's node in place (same value name, a compressed op) and converts that
layer's dense weights into the compressed op's parameters. One module per
transform registers a `Transform` here; its compressed ops live in `specc/ops`
with templates for every target, like any op.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import ast
from ..diagnostics import Note, SpeccError
from ..ir import Graph, Node, param_key
from ..weights import WEIGHTS_MISMATCH, stored_as
from ..passes.infer_shapes import infer_shapes
from .selectors import select


class TransformArgs(BaseModel):
    """Base of every transform's arguments: frozen, strict like op attributes, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass
class LayerPlan:
    """What one stage does to one layer, for `specc plan` and for weight conversion."""

    stage: int
    transform: str
    layer: str
    before: str  # op before
    after: str  # op after, or the same op when the transform keeps the layer as it is
    note: str  # why, e.g. "rank 32" or "kept dense: (in+out)*r >= in*out"
    args: Any = None
    before_node: Node | None = None
    kept: bool = False  # the transform left the layer as it was: weight conversion passes it by
    # said to the user when the stage does something they may not expect (a layer kept dense because the
    # rank asked for is more than the layer's full rank): a located diagnostic, rendered by `warning_text`
    warning: SpeccError | None = None
    stage_span: Any = None  # the stage's line: where a conversion error (e.g. gptq without --calib) points


class Kept(str):
    """What `Transform.rewrite` returns to keep a layer unchanged *and* say why (`None` keeps it silently).

    `warn=True` also makes it a located warning (`LayerPlan.warning`) that the commands print: the spec
    asked for something this layer cannot take, such as a rank above its full rank.
    """

    warn: bool

    def __new__(cls, reason: str, warn: bool = False) -> "Kept":
        kept = super().__new__(cls, reason)
        kept.warn = warn
        return kept


def warning_text(plan: LayerPlan) -> str:
    """A plan's warning the way the CLI prints diagnostics, marked `warning` instead of `error`."""
    assert plan.warning is not None
    return plan.warning.render().replace("error[", "warning[", 1)


@dataclass(frozen=True)
class Transform:
    name: str
    doc: str
    args: type[TransformArgs]
    ops: frozenset[str]  # op types it can rewrite
    # rewrite the node in place (op and attrs); return a short note, or None to keep the layer unchanged
    rewrite: Callable[[Graph, Node, Any], str | None]
    # dense state of the layer (keys without the layer prefix) -> compressed state of the rewritten layer
    convert: Callable[["LayerPlan", Node, dict[str, Any], "Calibration | None"], dict[str, Any]]
    # optional: called once per stage with every selected layer, before any rewrite; returns per-layer
    # arguments (a layer it leaves out keeps the stage's), for choices made across layers (a size budget).
    # Its last two arguments are the stage's span and the calibration data (`specc compress --calib`: the
    # dense weights and sample inputs) or None (compiling without weights)
    allocate: Callable[[Graph, list[str], Any, Any, "Calibration | None"], dict[str, Any]] | None = None
    # optional: called once before any layer is converted, with the compressed graph and the whole dense
    # state; returns the state the conversions start from (AWQ folds its scales into producing layers)
    prepare: Callable[[Graph, dict[str, Any], "Calibration | None"], dict[str, Any]] | None = None


@dataclass
class Calibration:
    """Sample inputs for transforms that need activations (e.g. MoE routing statistics)."""

    inputs: list[Any]
    graph: Graph  # the base model, typed
    state: dict[str, Any] = field(default_factory=dict)  # the base model's dense weights
    # what a transform worked out for its conversions (AWQ's scales per layer, in `prepare`)
    derived: dict[str, Any] = field(default_factory=dict)
    _operands: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _model: Any = field(default=None, repr=False)

    def operands_of(self, layer: str) -> list[Any]:
        """The values flowing into `layer` for the calibration inputs, in the dense base model (a probe
        module is generated and run once per layer)."""
        if layer not in self._operands:
            self._operands[layer] = self._probe(layer)
        return self._operands[layer]

    def _probe(self, layer: str) -> list[Any]:
        probe = _copy(self.graph)
        probe.outputs = {f"operand{i}": o for i, o in enumerate(probe.operands(layer))}
        return self._forward(self._module(probe, f"specc_probe_{layer}"), self.state)

    def outputs_with(self, replaced: dict[str, Any]) -> list[Any]:
        """The base model's outputs for the calibration inputs, its dense weights with some replaced (state
        dict keys -> tensors): what quantizing one layer does to the model (measured sensitivity)."""
        if self._model is None:
            self._model = self._module(_copy(self.graph), "specc_calibration_model")
        return self._forward(self._model, {**self.state, **replaced})

    @staticmethod
    def _module(graph: Graph, name: str) -> Any:
        from ..codegen.torch_backend import emit, load_module
        from ..passes import run_pipeline

        graph.properties = set()
        run_pipeline(graph, ("infer_shapes", "eliminate_dead_code"))
        return load_module(emit(graph).data.decode(), name).Model().eval()

    def _forward(self, module: Any, state: dict[str, Any]) -> list[Any]:
        import torch

        module.load_state_dict({k: v for k, v in state.items() if k in module.state_dict()})
        with torch.no_grad():
            out = module(*self.inputs)
        return list(out) if isinstance(out, tuple) else [out]


def _copy(graph: Graph) -> Graph:
    import copy

    return copy.deepcopy(graph)


_TRANSFORMS: dict[str, Transform] = {}


def register_transform(transform: Transform) -> Transform:
    _TRANSFORMS[transform.name] = transform
    return transform


def all_transforms() -> dict[str, Transform]:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "selectors":
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_TRANSFORMS.items()))


_WORDS = {"true": True, "false": False}  # the language's boolean literals; any other bare name is a word


def _transform_of(stage: ast.Stage) -> tuple[Transform, Any]:
    call = stage.transform
    transforms = all_transforms()
    if call.func not in transforms:
        import difflib

        close = difflib.get_close_matches(call.func, transforms, n=1)
        raise SpeccError("E0803", f"unknown transform `{call.func}`", call.func_span,
                         help=f"did you mean `{close[0]}`?" if close else f"transforms: {', '.join(transforms)}")
    transform = transforms[call.func]
    from ..lower import evaluate, validation_message
    from ..ops import build_attrs

    fields = list(transform.args.model_fields)
    if len(call.args) > len(fields):
        raise SpeccError("E0301", f"{call.func}() takes at most {len(fields)} positional arguments",
                         call.args[len(fields)].span)
    values: dict[str, Any] = {}
    spans = {}
    # a bare name as an argument is a word (e.g. `quantize(int4)`), not a variable
    context = ast.Definition("block", call.func, [], [], call.span, call.func_span)
    for name, arg in list(zip(fields, call.args)) + [(kw.name, kw.value) for kw in call.kwargs]:
        if name in values:
            raise SpeccError("E0301", f"{call.func}() got argument `{name}` twice", arg.span)
        values[name] = _WORDS.get(arg.id, arg.id) if isinstance(arg, ast.Name) else evaluate(arg, {}, context)
        spans[name] = arg.span
    try:
        return transform, build_attrs(transform.args, values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = str(err["loc"][0]) if err["loc"] else ""
        # a check across several arguments (a model validator) has no field: name the arguments instead
        what = f"`{where}`" if where else "arguments"
        raise SpeccError("E0302", f"invalid {what} for {call.func}(): {validation_message(err)}",
                         spans.get(where, call.span)) from None


def apply_stages(graph: Graph, comp: ast.CompressDef, calib: Calibration | None = None) -> list[LayerPlan]:
    """Rewrite `graph` (typed) by every stage of `comp`, in order; returns the per-layer plan.

    `calib` (with the dense weights) lets a stage choose from measurements, e.g. a mixed-bit stage's
    measured sensitivities; without it (compiling) such a stage reads what was measured before."""
    plans: list[LayerPlan] = []
    for index, stage in enumerate(comp.stages):
        transform, args = _transform_of(stage)
        layers = select(graph, stage, transform.ops, transform.name)
        per_layer: dict[str, Any] = {}
        if transform.allocate is not None:
            try:
                per_layer = transform.allocate(graph, layers, args, stage.span, calib)
            except SpeccError as err:
                if err.span is None:
                    err.span = stage.span
                raise
        for layer in layers:
            import copy

            node = graph.node(layer)
            before = copy.deepcopy(node)
            layer_args = per_layer.get(layer, args)
            try:
                note = transform.rewrite(graph, node, layer_args)
            except SpeccError as err:
                raise err.with_note(Note(f"while applying `{transform.name}` to layer `{layer}`", stage.span))
            kept = note is None or isinstance(note, Kept)
            if kept:  # a transform that keeps a layer must leave it exactly as it was
                node.op, node.attrs = before.op, before.attrs
            plan = LayerPlan(index, transform.name, layer, before.op, node.op,
                             note if not kept else "kept as it is" + (f": {note}" if note else ""), layer_args, before, kept,
                             stage_span=stage.span)
            if isinstance(note, Kept) and note.warn:
                plan.warning = SpeccError("E0809", f"`{transform.name}` keeps layer `{before.key if before.local else layer}` "
                                                   f"as it is: {note}", stage.span,
                                          [Note(f"layer `{layer}` is defined here", before.span)]
                                          if before.span else None)
            plans.append(plan)
        infer_shapes(graph)
    return plans


def convert_weights(graph: Graph, dense: dict[str, Any], calib: Calibration | None = None) -> dict[str, Any]:
    """Turn the base model's dense state dict into the compressed model's, stage by stage.

    A layer rewritten by several stages is converted by each in turn: stage k
    sees the parameters stage k-1 produced.
    """
    state = dict(dense)
    final = {name: graph.node(name) for name in graph.nx.nodes}
    transforms = all_transforms()
    if calib is not None:
        calib.state = dict(dense)  # the probes run the base model: its dense weights
    for name in dict.fromkeys(p.transform for p in graph.plan if not p.kept):
        if transforms[name].prepare is not None:
            state = _located(graph.plan, name, lambda: transforms[name].prepare(graph, state, calib))
    for i, plan in enumerate(graph.plan):
        if plan.kept:
            continue
        later = next((p for p in graph.plan[i + 1:] if p.layer == plan.layer), None)
        after = later.before_node if later is not None else final[plan.layer]
        # the layer's state-dict path (`h.0.h_linear` for `h_linear` in a block instance), not its IR name
        prefix = (after.key if after.local else plan.layer) + "."
        layer_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        converted = _located([plan], plan.transform,
                             lambda: transforms[plan.transform].convert(plan, after, layer_state, calib))
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in converted.items()})
    return state


def _located(plans: list[LayerPlan], transform: str, work: Callable[[], Any]) -> Any:
    """Run a conversion step; an error it raises without a location points at the stage's line."""
    try:
        return work()
    except SpeccError as err:
        if err.span is None:
            err.span = next((p.stage_span for p in plans if p.transform == transform), None)
        raise


# ------------------------------------------------------------------ dense checkpoints (`specc compress --weights`)


def rename_keys(state: dict[str, Any], rules: list[tuple[str, str]], origin: str) -> dict[str, Any]:
    """Apply prefix rules OLD -> NEW to a checkpoint's keys, the first matching rule per key (in order).

    For checkpoints whose module names differ from the spec's: `0.` -> `h_linear.` maps a
    `torch.nn.Sequential`'s first layer. A rule that matches no key, or two keys renamed to one, is an
    error: both mean the mapping is not what its writer thought.
    """
    out: dict[str, Any] = {}
    used: set[int] = set()
    for key, value in state.items():
        new = key
        for i, (old, repl) in enumerate(rules):
            if key.startswith(old):
                new = repl + key[len(old):]
                used.add(i)
                break
        if new in out:
            raise SpeccError(WEIGHTS_MISMATCH, f"renaming the keys of {origin} gives `{new}` twice", None,
                             help="make the --rename prefixes map distinct keys to distinct keys")
        out[new] = value
    unused = [old for i, (old, _) in enumerate(rules) if i not in used]
    if unused:
        raise SpeccError(WEIGHTS_MISMATCH, f"--rename prefix `{unused[0]}` matches no key of {origin}", None,
                         help=f"its keys begin: {', '.join(list(state)[:6])}")
    return out


def check_dense_state(graph: Graph, state: Any, origin: str) -> dict[str, Any]:
    """The base model's dense state dict, checked key by key and shape by shape against `graph` (typed).

    A checkpoint of a reference PyTorch model loads as it is when the spec names its layers like the
    reference (keys follow the spec's names and block instances; see README "Modules and state-dict
    keys"). Anything else is a `SpeccError` naming the key, never a KeyError deep in a transform.
    """
    import difflib

    import torch

    from ..ties import parameter_keys

    if not isinstance(state, dict):
        raise SpeccError(WEIGHTS_MISMATCH, f"{origin} holds a {type(state).__name__}, not a state dict", None,
                         help="save `model.state_dict()` with torch.save")
    nested = [k for k, v in state.items() if isinstance(v, dict)]
    if nested:
        raise SpeccError(WEIGHTS_MISMATCH, f"{origin} holds a dict under `{nested[0]}`, not a state dict of "
                                           f"tensors", None,
                         help=f"save the state dict itself (e.g. checkpoint[{nested[0]!r}]) with torch.save")
    expected = parameter_keys(graph)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SpeccError(WEIGHTS_MISMATCH, f"{origin}: `{key}` is a {type(value).__name__}, not a tensor", None)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        def listed(keys: list[str]) -> str:
            return ", ".join(f"`{k}`" for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        parts = ([f"missing {listed(missing)}"] if missing else []) + (
            [f"unexpected {listed(unexpected)}"] if unexpected else [])
        close = difflib.get_close_matches(unexpected[0], missing, n=1) if missing and unexpected else []
        hint = f"`{unexpected[0]}` may be `{close[0]}`; " if close else ""
        raise SpeccError(WEIGHTS_MISMATCH, f"the weights in {origin} do not match model `{graph.name}`: "
                                           f"{'; '.join(parts)}", None,
                         help=f"{hint}name the spec's layers like the checkpoint's (`linear(x, 128) as fc1`), or "
                              f"map keys with --rename OLD=NEW (prefixes) or --rename-map FILE.json")
    # each tensor as the base model stores it (a float checkpoint of another precision is cast, as
    # load_state_dict would), so the converted state holds the dtypes and bytes the plan counted
    owners = {param_key(node, name): (node, spec) for node in graph.nodes() for name, spec in node.params.items()}
    return {key: stored_as(graph, *owners[key], key, value, origin) for key, value in state.items()}


BAD_CALIBRATION = "E0612"  # calibration inputs that load but do not fit the base model


def check_calibration(graph: Graph, inputs: Any, origin: str) -> list[Any]:
    """The calibration inputs of `specc compress --calib` as a list, one tensor per input of the base model
    (`graph`, typed), each with its input's dtype, rank and static dims (symbolic dims take any size).

    Checked before anything runs them, so a wrong file is a message naming the input, not an error deep
    in a generated module."""
    import torch

    from ..types import DTYPES

    given = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    names = list(graph.inputs)
    if len(given) != len(names):
        raise SpeccError(BAD_CALIBRATION, f"{origin} holds {len(given)} calibration input(s), but model "
                                          f"`{graph.name}` takes {len(names)} ({', '.join(names)})", None,
                         help="save one tensor, or a tuple of tensors in the order of the model's inputs")
    for name, value in zip(names, given):
        expected = graph.node(name).type
        if not isinstance(value, torch.Tensor):
            raise SpeccError(BAD_CALIBRATION, f"{origin}: calibration input `{name}` is a {type(value).__name__}, "
                                              f"not a tensor", None)
        dims_fit = value.dim() == expected.rank and all(
            not isinstance(d, int) or d == size for d, size in zip(expected.shape, value.shape))
        if str(value.dtype) != f"torch.{DTYPES[expected.dtype][0]}" or not dims_fit:
            dtype = next((k for k, v in DTYPES.items() if f"torch.{v[0]}" == str(value.dtype)), str(value.dtype))
            got = f"{dtype}[{', '.join(map(str, value.shape))}]"
            raise SpeccError(BAD_CALIBRATION, f"{origin}: calibration input `{name}` is {got}, but model "
                                              f"`{graph.name}` takes {expected}", None)
    return given
