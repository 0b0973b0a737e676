"""The op registry: one `OpDef` per op, each declared in its own module here.

An op is its attributes (a pydantic model, validated when a spec is lowered), a
shape function (which must name every operand in its errors, like NNEF's), the
parameters it owns, and a few flags the passes read. Each backend provides a
template per op in `backends/<target>/ops/<op>.j2`; `tests/test_registry.py`
checks that none is missing.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict

from ..diagnostics import Note, SpeccError, did_you_mean
from ..ir import Graph, Node, ParamSpec
from ..types import FLOAT_DTYPES, Dim, TensorType, dim_str


class OpAttrs(BaseModel):
    """Base of every op's attribute model: frozen, strict (`true` is no int, `2.0` is no int),
    unknown fields rejected. Build them from spec values with `build_attrs`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def details(self) -> str:
        """What the compiler decided for this node beyond its attributes (e.g. the constraint layer's
        bound sets), shown under the IR dump; empty for most ops."""
        return ""


def build_attrs(model: type[BaseModel], values: dict[str, Any]) -> BaseModel:
    """Validate values from a spec; a spec list given for a tuple-typed field becomes a tuple."""
    fields = model.model_fields
    return model(**{k: _as_tuples(v) if k in fields and _wants_tuple(fields[k].annotation) else v
                    for k, v in values.items()})


def _wants_tuple(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return True
    return origin is not list and any(_wants_tuple(a) for a in typing.get_args(annotation))


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


class NoAttrs(OpAttrs):
    pass


class InferContext:
    """What a shape function sees: the node, its operand types, and how to complain."""

    def __init__(self, graph: Graph, node: Node) -> None:
        self.node = node
        self.graph = graph  # for shape functions that read the model's inputs (expand's symbolic sizes)
        self.attrs = node.attrs
        operands = graph.operands(node.name)
        self.types: list[TensorType] = [graph.node(o).type for o in operands]  # type: ignore[misc]
        self.labels = [_label(node, i, o) for i, o in enumerate(operands)]

    def describe(self, i: int) -> str:
        return f"{self.labels[i]} ({self.types[i]})"

    def error(self, message: str, code: str = "E0401") -> SpeccError:
        notes = [Note(f"in block `{block}`, called here", span) for block, span in reversed(self.node.call_sites)]
        return SpeccError(code, f"{self.node.op}: {message}", self.node.span, notes)

    def static(self, i: int, axis: int, what: str) -> int:
        """Operand i's dim at `axis`, which must be a known integer (e.g. to size a weight)."""
        dim = self.types[i].shape[axis]
        if not isinstance(dim, int):
            raise self.error(f"{what} must be a static size, but {self.describe(i)} has {dim_str(dim)} there")
        return dim


def _label(node: Node, i: int, operand: str) -> str:
    span = node.arg_spans[i] if i < len(node.arg_spans) else None
    if span is not None and span.line == span.end_line:
        return "`" + span.source.line(span.line)[span.col - 1:span.end_col - 1] + "`"
    return f"`{operand}`"


def no_params(ctx: InferContext) -> dict[str, ParamSpec]:
    return {}


def no_flops(ctx: InferContext) -> int:
    """For data movement (concat, slice, transpose, ...): copies elements, computes nothing."""
    return 0


@dataclass(frozen=True)
class OpDef:
    name: str
    doc: str
    operands: tuple[str, ...]
    attrs: type[OpAttrs]
    infer: Callable[[InferContext], TensorType]
    params: Callable[[InferContext], dict[str, ParamSpec]] = no_params
    elementwise: bool = False  # pointwise over one output shape: the fusion pass may group it
    scalar_operand: bool = False  # the second operand may be a number (stored as attrs.scalar)
    variadic: bool = False  # the last operand takes a list of tensors, e.g. concat([a, b])
    flops: Callable[[InferContext], Dim] | None = None  # multiply-adds count 2; None: one per output element
    # the name of a list attribute whose sizes make up the output's last dim: the lowering then returns
    # one slice per item, named after the item's source name (`fixed_point(state=[h, c])` gives `q.h`, `q.c`)
    parts: str | None = None
    # trailing operands a call may leave out (`fixed_point(x, mask)` or `fixed_point(x)`); the op's shape
    # function and templates see only the operands given
    optional: tuple[str, ...] = ()
    # the ONNX target reads tensors the torch layer derives from its parameters (`layer.export_weights()`,
    # e.g. a parametrized weight matrix), exported as initializers `<node>__<name>`
    export_weights: bool = False
    # the optional operands bind by keyword only (`attention(x, 4, mask=m)`: 4 is `heads`), and the lowering
    # records the names of the operands a call gave in the attrs field `operands` (not settable from a spec),
    # so the op tells `mask=m` from `context=m` when only one is given
    keyword_operands: bool = False
    # an op with several results (topk: values, indices) names them here and gives their types with
    # `result_types` (`infer` gives the first's). The lowering adds a `result` node per name that picks it
    # from the op's node, and returns them by name (`v, i = topk(x, 3)`, `r.indices`); where a tensor is
    # expected the call stands for its first result. When only the first is used the lowering folds the
    # `result` nodes away and the node is that result; otherwise it sets the attrs field `all_results`
    # (which the op's attrs declare, not settable from a spec) and the node's value is all the results,
    # computed once: a tuple in torch, values `<node>__<result>` in ONNX.
    results: tuple[str, ...] = ()
    result_types: Callable[[InferContext], tuple[TensorType, ...]] | None = None
    # the positional order of the leading arguments when it is not operands first, e.g. torch's
    # `gather(x, dim, index)`; the other names follow in the usual order
    positional: tuple[str, ...] = ()
    # values the op reads at run time besides its operands, from its (inferred) attributes: expand reads a
    # model input's size. Generated modules pass them to the class that runs the op, like operands.
    reads: Callable[[Any], tuple[str, ...]] | None = None

    def slots(self) -> list[str]:
        """The names a call binds, in positional order: `positional`, then operands, attributes, keyword-only
        operands."""
        keyword = self.optional if self.keyword_operands else ()
        hidden = ({"operands"} if self.keyword_operands else set()) | ({"all_results"} if self.results else set())
        fields = [f for f in self.attrs.model_fields if f not in hidden]
        usual = [o for o in self.operands if o not in keyword] + fields + list(keyword)
        return list(self.positional) + [name for name in usual if name not in self.positional]

    def given_operands(self, bound: typing.Container[str]) -> dict[str, Any]:
        """The lowering's `operands` attribute for a call that bound `bound` (nothing for most ops)."""
        return {"operands": tuple(o for o in self.operands if o in bound)} if self.keyword_operands else {}

    def signature(self) -> str:
        fields = self.attrs.model_fields
        names = [(f"{o}=None" if o in self.optional else o) if o not in fields else
                 (o if fields[o].is_required() else f"{o}={fields[o].default!r}") for o in self.slots()]
        if self.variadic:
            names[len(self.operands) - 1] = f"[{names[len(self.operands) - 1]}, ...]"
        return f"{self.name}({', '.join(names)})"


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in _REGISTRY:
        raise RuntimeError(f"op {op.name!r} registered twice")
    _REGISTRY[op.name] = op
    return op


def get(name: str) -> OpDef | None:
    _load_all()
    return _REGISTRY.get(name)


def all_ops() -> dict[str, OpDef]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def suggest(name: str, blocks: Iterable[str] = ()) -> str | None:
    """"did you mean `relu`?" for a misspelled op, or block (`blocks`: the names the spec defines)."""
    return did_you_mean(name, [*all_ops().keys(), *blocks])


_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")


# ------------------------------------------------------------ shared shape rules
def broadcast(ctx: InferContext, a: int, b: int) -> tuple[Dim, ...]:
    """Numpy broadcasting of operands a and b, naming both on failure."""
    sa, sb = ctx.types[a].shape, ctx.types[b].shape
    out: list[Dim] = []
    for i in range(1, max(len(sa), len(sb)) + 1):
        da = sa[-i] if i <= len(sa) else 1
        db = sb[-i] if i <= len(sb) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ctx.error(f"cannot broadcast {ctx.describe(a)} with {ctx.describe(b)}: "
                            f"dim {-i} is {dim_str(da)} vs {dim_str(db)}", "E0402")
    return tuple(reversed(out))


def same_dtype(ctx: InferContext, a: int, b: int) -> str:
    if ctx.types[a].dtype != ctx.types[b].dtype:
        raise ctx.error(f"dtype mismatch: {ctx.describe(a)} vs {ctx.describe(b)}", "E0403")
    return ctx.types[a].dtype


def normalize_axis(ctx: InferContext, axis: int, rank: int, what: str = "dim") -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"{what}={axis} is out of range for {ctx.describe(0)} of rank {rank}", "E0404")
    return axis % rank


def float_input(ctx: InferContext, i: int = 0) -> TensorType:
    t = ctx.types[i]
    if t.dtype not in ("f32", "f64", "f16", "bf16"):
        raise ctx.error(f"expects a floating-point tensor, got {ctx.describe(i)}", "E0403")
    return t


def check_number(ctx: InferContext, i: int, number: int | float | None) -> None:
    """Operand `i` meets a number (`x * 2`, `x < 0.5`). A bool tensor meets none; an int tensor only a
    whole one: the ONNX target casts the number to the tensor's type, which would silently truncate 0.5."""
    if number is not None and ctx.types[i].dtype == "bool":
        raise ctx.error(f"{ctx.describe(i)} is a bool tensor, so it cannot meet the number {number!r}", "E0403")
    if isinstance(number, float) and ctx.types[i].dtype not in FLOAT_DTYPES and not number.is_integer():
        raise ctx.error(f"{ctx.describe(i)} is not floating-point, so it cannot meet the number {number!r}",
                        "E0403")
