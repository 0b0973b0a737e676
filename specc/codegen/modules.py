"""The module tree of a generated Python model: one `nn.Module` class per block, like hand-written torch code.

Lowering inlines blocks into one graph but records, on every node, the scope it was made in: the path
of module instances from the model (`("layer1", "0")` is the first iteration of `layer1 = repeat ...`,
see `ir.Scope`). Here each scope becomes an instance of a class whose `forward` computes the scope's
own values and calls its child scopes; a `repeat` becomes an `nn.ModuleList`, run by a `for` loop
where each iteration feeds the next. Instances whose code is the same text share one class (every
iteration of a `repeat`, every call of a block with the same arguments); a block whose calls differ
(say, one with a projection shortcut) gets one class per variant: `BasicBlock`, `BasicBlock2`.

A scope's forward takes the values its subtree reads from outside it, ordered by first use, and
returns the values read outside it, in graph order, so equal instances get equal signatures. Names
inside a class are the scope's local names (`Node.local`); arguments take the block's parameter
names where the call passed a tensor. Both Python targets build on this: a "step" of a scope's own is
whatever the backend schedules as one statement (a node, or for triton a fused group).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import networkx as nx

from ..ir import RESERVED, Graph, _Names, attribute_name
from . import camel, extra_reads, self_attribute
from ..escape import py_float, py_string

Path = tuple[str, ...]


@dataclass
class ClassView:
    """One generated class: its `__init__` lines and `forward` steps, in the backend's own step type."""

    name: str
    block: str | None
    inputs: list[str]
    outputs: list[str]
    init: list[str]
    steps: list[str]  # forward statements (a loop is several lines)
    text: str = ""  # what instances compare to share the class
    container: bool = False  # holds a layer whose name is not an attribute (`0`): an nn.ModuleDict, `self["0"]`
    args: list[tuple[str, str]] = field(default_factory=list)  # constructor arguments (name, type): sizes
    # lines that re-initialize what `__init__` made, in its order (torch target: `reset_parameters`, or the
    # model's `init_weights`, for a model built on the meta device); None where the backend makes none
    reset: list[str] | None = None
    reset_method: str | None = None  # the method the torch target puts `reset` in (None: `_reset` walks children)


@dataclass
class _ScopeIO:
    inputs: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> (first user's order, operand index)
    outputs: dict[str, int] = field(default_factory=dict)  # value -> its order


class ModuleTree:
    """Builds the classes of a graph's scopes. `step_of` maps a node to the backend step it belongs to
    (itself, or its fusion group); `render_step(step, var)` gives a step's init line (or "") and its
    forward statement, with values spelled `var[value]`."""

    def __init__(self, graph: Graph, step_of: Callable[[str], str], reserved: set[str],
                 reset_step: Callable[[str, str], str] | None = None) -> None:
        self.graph = graph
        self.step_of = step_of
        # (step, its init line) -> the line re-initializing what that init line made (torch target only)
        self.reset_step = reset_step
        self.order = {name: i for i, name in enumerate(graph.topo_order())}
        self.io: dict[Path, _ScopeIO] = {}
        self.members: dict[Path, list[str]] = {}  # scope -> every node in its subtree, in order
        self.iterations: dict[Path, list[Path]] = {}  # `list` scope -> its iterations with members, in order
        self.instance: dict[Path, str] = {}  # block scope -> how its parent constructs it: `BasicBlock(planes=64)`
        self.named: dict[str, str] = {}  # a class's code -> its name (equal code at two depths is one class)
        self.taken = set(reserved)
        self.classes: list[ClassView] = []
        self._collect()
        for path in self.members:  # once, not per question: a repeat may have thousands of iterations
            if path and path[:-1] in graph.scopes and graph.scopes[path[:-1]].kind == "list":
                self.iterations.setdefault(path[:-1], []).append(path)
        for items in self.iterations.values():
            items.sort(key=lambda p: int(p[-1]))

    # ------------------------------------------------------------ analysis
    def _collect(self) -> None:
        """For every scope: its subtree's nodes, and the values crossing its boundary (O(edges x depth))."""
        g = self.graph
        outputs = set(g.outputs.values())
        for name in g.topo_order():
            scope = g.node(name).scope
            for depth in range(len(scope) + 1):
                self.members.setdefault(scope[:depth], []).append(name)
            for i, operand in enumerate(g.operands(name) + list(extra_reads(g.node(name)))):
                source = g.node(operand).scope
                for depth in range(1, len(scope) + 1):
                    path = scope[:depth]
                    if source[:depth] != path:
                        io = self.io.setdefault(path, _ScopeIO())
                        io.inputs.setdefault(operand, (self.order[name], i))
            for user in g.users(name):
                target = g.node(user).scope
                for depth in range(1, len(scope) + 1):
                    if target[:depth] != scope[:depth]:
                        self.io.setdefault(scope[:depth], _ScopeIO()).outputs[name] = self.order[name]
            if name in outputs:
                for depth in range(1, len(scope) + 1):
                    self.io.setdefault(scope[:depth], _ScopeIO()).outputs[name] = self.order[name]

    def inputs_of(self, path: Path) -> list[str]:
        io = self.io.get(path, _ScopeIO())
        return sorted(io.inputs, key=io.inputs.__getitem__)

    def outputs_of(self, path: Path) -> list[str]:
        io = self.io.get(path, _ScopeIO())
        return sorted(io.outputs, key=io.outputs.__getitem__)

    def _unit(self, path: Path, name: str, loops: set[Path]) -> tuple:
        """What a node of `path`'s subtree is, seen from `path`: one of its steps, or a child it calls."""
        scope = self.graph.node(name).scope
        if scope == path:
            return ("step", self.step_of(name))
        child = scope[:len(path) + 1]
        if self.graph.scopes[child].kind == "list" and child not in loops:
            return ("call", scope[:len(path) + 2])
        return ("call", child)

    def _loopable(self, path: Path) -> bool:
        """Whether a `repeat` runs as a loop: each iteration has one output, which only the next reads
        (at the same argument position), and every other argument is the same value in each iteration."""
        items = self._items(path)
        if not items or not self._contiguous(path):
            return False
        outs = [self.outputs_of(p) for p in items]
        if any(len(o) != 1 for o in outs) or self.outputs_of(path) != outs[-1]:
            return False
        ins = [self.inputs_of(p) for p in items]
        if len(set(map(len, ins))) != 1:
            return False
        if len(items) == 1:
            return True
        chained = [ins[i].index(outs[i - 1][0]) if outs[i - 1][0] in ins[i] else -1 for i in range(1, len(items))]
        if chained[0] < 0 or any(c != chained[0] for c in chained):
            return False
        c = chained[0]
        shared = [x[:c] + x[c + 1:] for x in ins]
        return all(s == shared[0] for s in shared)

    def _items(self, path: Path) -> list[Path]:
        """The iterations of a `repeat` that compute something (passes may have moved or removed the
        others' values: CSE hoists what an iteration shares with its parent), in order."""
        return self.iterations.get(path, [])

    def _contiguous(self, path: Path) -> bool:
        """Whether its iterations are 0, 1, ..., n-1: an nn.ModuleList (else an nn.ModuleDict by index)."""
        items = self._items(path)
        return [int(p[-1]) for p in items] == list(range(len(items)))

    # ------------------------------------------------------------ building
    def build(self, path: Path, render_step: Callable) -> ClassView:
        """The class of scope `path` (and, first, of every scope below it)."""
        g = self.graph
        names = _Names()
        names.taken = set(g.names_in(path).taken)
        var: dict[str, str] = {}
        inputs = []
        given = dict(g.scopes[path].arg_names) if path in g.scopes else {}
        for value in (self.inputs_of(path) if path else g.inputs):
            if value in given or not path:  # a block's parameter name (reserved in its scope), or a model input
                name = given.get(value, g.node(value).local)
            else:  # a value the body of a `repeat` reads from around it
                name = names.take(g.node(value).local)
            names.taken.add(name)
            var[value] = name
            inputs.append(name)
        for name in self.members.get(path, []):
            node = g.node(name)
            if node.scope == path:  # a layer named like `0` or `forward` keeps that name as a layer only
                var[name] = node.local if node.local.isidentifier() and node.local not in RESERVED \
                    else names.take(node.local)
        loops = {p for p in g.scopes if p[:-1] == path and g.scopes[p].kind == "list" and self._loopable(p)}
        units: dict[tuple, int] = {}
        deps = nx.DiGraph()
        for name in self.members.get(path, []):
            if name in g.inputs:
                continue
            unit = self._unit(path, name, loops)
            units.setdefault(unit, len(units))
            deps.add_node(unit)
            for operand in g.operands(name) + list(extra_reads(g.node(name))):
                if operand in g.inputs or g.node(operand).scope[:len(path)] != path:
                    continue  # an argument of this forward: there from the start
                other = self._unit(path, operand, loops)
                if other != unit:
                    deps.add_edge(other, unit)
        try:
            schedule = list(nx.lexicographical_topological_sort(deps, key=lambda u: units[u]))
        except nx.NetworkXUnfeasible:
            raise RuntimeError(f"the values of scope `{'.'.join(path) or 'model'}` are interleaved with "
                               "another scope's in a cycle; a pass mixed scopes") from None
        # `__init__` registers layers in the order the spec makes them (so both Python targets list the
        # same parameters() in the same order), whatever order the backend's steps run in
        made: dict[tuple, int] = {}  # unit -> when its first layer (else its first value) is made
        for name in self.members.get(path, []):
            if name not in g.inputs and (g.node(name).params or g.node(name).op in _BUFFER_OPS):
                made.setdefault(self._unit(path, name, loops), self.order[name])
        for name in self.members.get(path, []):
            if name not in g.inputs:
                made.setdefault(self._unit(path, name, loops), self.order[name])
        init: list[tuple[int, str]] = []
        resets: list[tuple[int, str]] = []
        steps: list[str] = []
        for kind, key in schedule:
            line, code = render_step(key, var) if kind == "step" else self._call(key, path, loops, names, var,
                                                                                 render_step)
            if line:
                init.append((made[(kind, key)], line))
                if self.reset_step is not None:  # a child block, loop or list: reset the module it assigned
                    resets.append((made[(kind, key)], self.reset_step(key, line) if kind == "step"
                                   else f"_reset({line.partition(' = ')[0]})"))
            steps.append(code)
        outputs = [var[v] for v in (self.outputs_of(path) if path else g.outputs.values())]
        scope = g.scopes.get(path)
        container = any(not attribute_name(n) for n in g.names_in(path).taken)
        return ClassView("", scope.block if scope else None, inputs, outputs,
                         [line for _, line in sorted(init, key=lambda item: item[0])], steps, container=container,
                         reset=[line for _, line in sorted(resets, key=lambda item: item[0])]
                         if self.reset_step is not None else None)

    def _call(self, key: Path, parent: Path, loops: set[Path], names: _Names, var: dict[str, str],
              render_step: Callable) -> tuple[str, str]:
        """The init line and forward statement that run child scope `key` (a block, a loop, or one
        iteration of an unrolled `repeat`)."""
        g = self.graph
        if key in loops:
            items = self._items(key)
            classes = [self.instance[p] for p in items]
            args = [var[v] for v in self.inputs_of(items[0])]
            chained = self.inputs_of(items[1]).index(self.outputs_of(items[0])[0]) if len(items) > 1 else 0
            out = key[-1] if key[-1].isidentifier() and key[-1] not in RESERVED else names.take(key[-1])
            layer = var.setdefault(_LOOP, names.take("layer"))  # one loop variable per forward
            var[self.outputs_of(key)[0]] = out
            listing = (f"nn.ModuleList([{classes[0]} for _ in range({len(items)})])" if len(set(classes)) == 1
                       else "nn.ModuleList([" + ", ".join(classes) + "])")
            args[chained] = out
            code = (f"{out} = {var[self.inputs_of(items[0])[chained]]}\n"
                    f"for {layer} in {self_attribute(key[-1])}:\n    {out} = {layer}({', '.join(args)})")
            return f"{self_attribute(key[-1])} = {listing}", code
        args = ", ".join(var[v] for v in self.inputs_of(key))
        produced = self.outputs_of(key)
        unrolled = key[:-1] != parent
        seg = f"{key[-2]}_{key[-1]}" if unrolled else key[-1]
        if len(produced) == 1 and not unrolled and seg.isidentifier() and seg not in RESERVED:
            outs = [seg]  # a child's attribute name is free as a variable: `h = self.h(x)`
        else:
            outs = [names.take(seg if len(produced) == 1 else f"{seg}_{g.node(v).local}") for v in produced]
        var.update(zip(produced, outs))
        targets = ", ".join(outs)
        if unrolled:  # an iteration of a `repeat` that does not run as a loop: `self.layers[2](x)`
            items, line, container = self._items(key[:-1]), "", self_attribute(key[-2])
            if self._contiguous(key[:-1]):
                if key == items[0]:
                    line = f"{container} = nn.ModuleList([" + ", ".join(self.instance[p] for p in items) + "])"
                return line, f"{targets} = {container}[{key[-1]}]({args})"
            if key == items[0]:  # some iterations compute nothing here: keep the others' indices as keys
                entries = ", ".join(f"{py_string(p[-1])}: {self.instance[p]}" for p in items)
                line = f"{container} = nn.ModuleDict({{{entries}}})"
            return line, f"{targets} = {container}[{py_string(key[-1])}]({args})"
        return f"{self_attribute(key[-1])} = {self.instance[key]}", f"{targets} = {self_attribute(key[-1])}({args})"

    def build_all(self, render_step: Callable) -> ClassView:
        """Every scope's class, deepest first (a class's `__init__` constructs its children's), then the
        model's, which is returned (the others are in `classes`)."""
        g = self.graph
        blocks = [p for p in g.scopes if g.scopes[p].kind == "block" and p in self.members]
        for depth in sorted({len(p) for p in blocks}, reverse=True):
            self._name_classes({p: self.build(p, render_step) for p in blocks if len(p) == depth})
        return self.build((), render_step)

    def _name_classes(self, views: dict[Path, ClassView]) -> None:
        """Name the classes of one depth's scopes and set how each instance is constructed. Equal code is
        one class. Instances of one block whose code differs only in numbers that are the block's own
        sizes (its number parameters, the dims its typed tensor parameters bound) are one class taking
        those sizes as constructor arguments: `BasicBlock(inplanes=64, planes=128, stride=2)`."""
        by_text: dict[str, list[Path]] = {}
        for path, view in views.items():
            view.text = repr((view.block, view.inputs, view.outputs, view.init, view.steps, view.container,
                              view.reset))
            by_text.setdefault(view.text, []).append(path)
        groups: dict[tuple, list[str]] = {}
        for text, paths in by_text.items():
            view = views[paths[0]]
            shape = (view.block, tuple(view.inputs), tuple(view.outputs), view.container,
                     tuple(_NUMBER.sub("#", _split(line)[0]) for line in view.init + view.steps))
            groups.setdefault(shape, []).append(text)
        for texts in groups.values():
            variants = [(views[by_text[t][0]], by_text[t]) for t in texts]
            merged = self._merge(variants)
            if merged is not None:
                view, arguments = merged
                name = self._add_class(view, variants[0][1][0])
                self.instance.update((p, f"{name}({args})") for p, args in arguments.items())
                continue
            for view, paths in variants:
                name = self._add_class(view, paths[0])
                self.instance.update((p, f"{name}()") for p in paths)

    def _merge(self, variants: list[tuple[ClassView, list[Path]]]) -> tuple[ClassView, dict[Path, str]] | None:
        """One class for code variants that differ only in numbers, where each differing number is one
        size parameter's value in every instance; None where one is not. Numbers that are the same in
        every instance become a size too where exactly one size has that value (not 0 or 1) and the
        line builds a layer or reshapes: `nn.Linear(hidden_size, intermediate_size)`,
        `x.reshape(x.shape[0], self.T, self.heads, -1)`."""
        g = self.graph
        every = [p for _, paths in variants for p in paths]
        sizes = {p: dict(g.scopes[p].sizes) for p in every}
        declared = [name for name, _ in g.scopes[every[0]].sizes]
        usable = sorted((name for name in declared if attribute_name(name) and name not in RESERVED
                         and all(name in sizes[p] and name not in g.names_in(p).taken for p in every)),
                        key=lambda n: n in g.scopes[every[0]].size_dims)  # parameters before dims
        first = variants[0][0]
        if any(view.reset != first.reset for view, _ in variants):
            return None  # re-initialized differently (a parameter's std differs): one class per variant
        n_init = len(first.init)
        lines = [view.init + view.steps for view, _ in variants]
        used: list[str] = []
        merged = []
        for i, line in enumerate(lines[0]):
            code, comment = _split(line)
            numbers = [[float(m.group(0)) for m in _NUMBER.finditer(_split(v[i])[0])] for v in lines]
            edits = []
            sized = i < n_init or any(call in code for call in _SIZED_CALLS)
            for k, match in enumerate(_NUMBER.finditer(code)):
                fits = [n for n in usable if all(sizes[p][n] == numbers[j][k]
                                                 for j, (_, paths) in enumerate(variants) for p in paths)]
                if len({values[k] for values in numbers}) > 1:  # differs between variants: must be a size
                    if not fits:
                        return None
                    name = fits[0]
                elif sized and len(fits) == 1 and numbers[0][k] not in (0, 1):
                    name = fits[0]  # the same everywhere, and only one size has its value: spell it by name
                else:
                    continue  # a constant of the block
                used.append(name)
                edits.append((match.start(), match.end(), f"self.{name}" if i >= n_init else name))
            for start, end, text in reversed(edits):
                code = code[:start] + text + code[end:]
            if comment and any(_split(v[i])[1] != comment for v in lines):
                comment = comment.split("  ")[-1]  # the types differ between instances: keep where it is from
            merged.append(code + (f"  # {comment}" if comment else ""))
        order = [name for name in declared if name in used]
        stored = [name for name in order if any(f"self.{name}" in line for line in merged[n_init:])]
        args = [(name, "float" if isinstance(sizes[every[0]][name], float) else "int") for name in order]
        view = ClassView("", first.block, first.inputs, first.outputs,
                         [f"self.{name} = {name}" for name in stored] + merged[:n_init], merged[n_init:],
                         container=first.container, args=args, reset=first.reset)
        return view, {p: ", ".join(f"{name}={_number(sizes[p][name])}" for name in order) for p in every}

    def _add_class(self, view: ClassView, path: Path) -> str:
        """Name a new class, or return the name of the same code's class made at another depth."""
        text = repr((view.block, view.inputs, view.outputs, view.init, view.steps, view.container, view.args,
                     view.reset))
        if text in self.named:
            return self.named[text]
        scope = self.graph.scopes[path]
        base = camel(scope.block) if scope.block else camel(path[-2] if path[-1].isdigit() else path[-1]) + "Layer"
        base = base if base and base[0].isalpha() else "Block" + base
        name, i = base, 2
        while name in self.taken:
            name, i = f"{base}{i}", i + 1
        self.taken.add(name)
        view.name = name
        self.named[text] = name
        self.classes.append(view)
        return name


# A number in generated code that may be a size: not part of a name, an index (`[0]`) or a string.
_NUMBER = re.compile(r"(?<![\w.\"'\[])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.\"'])")


# forward calls whose numbers are sizes (in other calls a number equal to a size, such as a permutation's
# `2`, is a coincidence)
_SIZED_CALLS = (".reshape(", ".view(", ".expand(")

# ops that register a buffer but own no parameter (their init line is placed like a layer's)
_BUFFER_OPS = frozenset({"arange"})

_LOOP = " loop"  # the key of a forward's loop variable among its value names (no IR name has a space)


def _split(line: str) -> tuple[str, str]:
    """A statement and its trailing comment (`# f32[B, 64]  spec.nnspec:3`)."""
    code, sep, comment = line.partition("  # ")
    return code, comment


def _number(value: int | float) -> str:
    return py_float(value) if isinstance(value, float) else str(value)
