"""fixed_point: a monotone equilibrium layer (monDEQ) and mean-field inference in a monotone DBM.

    q = fixed_point(x, state=[hidden, classes], weight=monotone(m=0.05),
                    activation=prox_softmax(groups=...),
                    solver=peaceman_rachford(alpha=0.5, tol=1e-5, max_iter=100))
    output y = q.classes

The layer returns the state `z*` (of width `sum(state)`) solving

    z* = sigma(W z* + U x + b)

where sigma is the activation (relu, sigmoid, or a softmax over each categorical group, which makes
`z*` the mean-field fixed point of a DBM), and W is parametrized so that `I - W >= m I` (strongly
monotone): then the fixed point exists, is unique, and the splitting solvers converge to it from any
start. The result has one named slice per `state` item (`q.hidden`, `q.classes`).

Weights (`weight=`):
- `monotone(m=0.05)`: dense monDEQ form `W = (1-m) I - A^T A + B - B^T` (free A, B): the
  symmetric part of `I - W` is `m I + A^T A`.
- `mdbm(m=0.05, groups=...)`: the monotone DBM form, symmetric and block-hollow over `groups` (units
  of one group do not interact): `W = blockdiag(A'^T A') - A'^T A'` with `A' = A S^(1/2)`, S scaling
  each group's columns so each diagonal block of `A'^T A'` has spectral norm <= 1 - m. The scaling is
  symmetric (columns, per group), so W stays symmetric and `I - W >= m I` holds exactly. `groups`
  defaults to the softmax groups of the activation (else each state part is one group, a layered DBM)
  and must not split a softmax group.
- `unconstrained()`: a free W, no guarantee (for comparison).
- `mdbm_conv(m=0.05, image=[h, w], channels=[c0, c1, ...], kernel=3, groups=...)`: the convolutional
  multi-tier monotone DBM. The state is one channels-last image per tier (tier t: c_t channels at
  h/2^t x w/2^t, so a softmax group of channels at one pixel is contiguous), then at most one dense part (the
  label). W = -D (G - blockdiag(G)) D with G = A^T A, where A is made of circular k x k convolutions inside
  each tier, stride-2 ones from each tier into the next, and a position-dependent map from the dense part into
  every tier; blockdiag(G) is G on each group at each pixel and D scales those blocks to norm <= 1 - m, so W
  is symmetric and hollow and I - W >= m I exactly. The tiers rearranged by pixel_unshuffle onto the last
  tier's grid make every convolution block-circulant, so the FFT applies W exactly (one small product per
  frequency). Peaceman-Rachford: V = (I + alpha (I - W))^-1 is applied exactly by FFT (one small Hermitian
  solve per frequency) plus a Schur complement for the dense part. Forward-backward: W by the FFT, the step
  alpha chosen from the exact eigenvalues of the convolutional block's symbols, the dense block's, and the
  coupling's norm (an interval containing the spectrum of I - W: the spec's alpha when it provably contracts,
  else 2/(lo + hi)); a step costs what a Peaceman-Rachford step does, and no factorization. See
  _FixedPointConv in backends/torch/fixed_point_conv.j2. Triton runs it with its prox kernels. ONNX has no
  complex linear algebra, so its Loop applies V's (or W's) convolutional block as one Conv with its full-size
  real kernel over the circularly extended grid (N^2 h w weights for N polyphase channels on the last tier's
  h x w grid: as exact, O((h w)^2) work per channel pair where the FFT takes O(h w log(h w))), the dense part
  by the exported Schur pieces (or W's coupling and dense block), and the input by a Conv with U_conv.

Activations (`activation=`): `relu()`, `sigmoid()` (monDEQ), `prox_softmax(groups=...)` (mean field
over categorical groups: `...` makes each state part one group, an int is the group size in every
part, a list gives the size per part). Each is used through its proximal operator, so the iteration
is a true operator splitting: the softmax prox has a Lambert-W closed form per unit plus a 1-D
search for the normalizer (a fixed number of Halley steps per unit; the normalizer's safeguarded
Newton/bisection search runs until every group has settled, float64 error <= 1e-10 for alpha >= 1e-3 and
groups up to 1,000; the group max is subtracted first, for float32).

Solvers (`solver=`): `forward_backward(alpha, tol, max_iter, anderson)` iterates
`z <- prox_alpha((1 - alpha) z + alpha (W z + U x + b))`; `peaceman_rachford(alpha, tol, max_iter,
anderson)` uses `V = (I + alpha (I - W))^-1` and converges for every alpha > 0. Rows stop
independently once `|z_k+1 - z_k| / (|z_k+1| + 1e-6) <= max(tol, 32 eps)` (divided by alpha for
forward-backward, whose steps are alpha-sized; the 32 eps floor keeps the test reachable in float32). A solve
that reaches max_iter with rows above that is never returned silently: the torch and Triton layers warn
(RuntimeWarning, with the residual), or raise with `strict=true` (the ONNX Loop and torch.compile cannot
warn; they return the last iterate). Anderson acceleration runs
in eager torch (and the triton module's loop); the ONNX Loop and torch.compile run the plain
iteration, which reaches the same fixed point. Gradients come from implicit differentiation (the adjoint fixed point of the same
splitting), not from backpropagation through the iterations; the torch layer writes the adjoint out (the prox
Jacobians are diagonal, or diagonal minus rank one per softmax group, and W's gradient follows from
dV = alpha V dW V), so a backward step costs one product with V or W.

Speed (torch, eager): Peaceman-Rachford's V is factored once per forward (Cholesky for the symmetric mdbm
weight) and reused by the backward; the softmax prox inside a solve is warm-started from the previous
iterate's solution and runs Newton on every group's normalizer and Halley on the units jointly, over all groups
in one pass (falling back to the safeguarded search when that does not settle), as exact as the standalone prox;
on the CPU rows are checked every iteration (a host check costs nothing there). bench/monotone_bench.py times it
against a port of the reference code (bench/reference_mdbm.py).

Observed units (joint completion and classification): `fixed_point(x, mask, ...)` clamps the leading
`x.shape[-1]` state units (which must end at a part boundary) to x where `mask > 0` and infers the
rest, including the units where `mask <= 0`; there is no input projection U then, observed units act
through W. A softmax group that is only partly observed keeps its observed values and gives its free units
the mass they leave, 1 - sum of the observed values (clamped to [0, 1]): their prox is the softmax prox on
that smaller simplex (one target mass threaded through the same normalizer search), so the fixed point is the
conditional mean field, free units = mass * softmax(logits over the free units), and the group sums to 1
(with observed values summing to at most 1). The mask is a run-time input, so this is decided per row at run
time; wholly observed and wholly free groups compute as before. Implicit gradients include the prox Jacobian
of the free units at that mass and the mass's dependence on the observed values. The same on every target:
torch (dense and mdbm_conv), Triton (its prox kernels for the other groups, the torch prox for a row's partly
observed groups) and ONNX (the mass in its normalizer Loop).

Compile-time checks: 0 < m < 1 (E0850); alpha > 0, tol > 0, max_iter >= 1 (E0851); forward-backward
converges only for alpha < 2m/L^2 with L = |I - W| >= m, so alpha >= 2/m can never converge (E0852);
at run time the spec's alpha is kept when the forward step contracts (|I - alpha (I - W)|_2 < 1), else the
step that minimizes that contraction is used: 2/(lambda_min + lambda_max) of I - W for the symmetric mdbm
weight, mu/L^2 with mu the least eigenvalue of the symmetric part otherwise (the fixed point does not depend
on alpha); the sigmoid and softmax proxes need alpha <= 1 (E0853); groups must divide the parts
(E0854); operand shapes (E0856); mdbm_conv: tiers, image and state disagree (E0857), the kernel size (E0858),
groups that span pixels (E0860), an input that is not a channels-last image of the first tier's size (E0861).
(E0859, "mdbm_conv runs peaceman_rachford only", is retired: forward-backward runs on it too.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, PositiveInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..ir import ParamSpec
from ..types import Dim, TensorType, dim_div, dim_mul
from . import InferContext, OpAttrs, OpDef, float_input, register

BAD_M = "E0850"
BAD_SOLVER = "E0851"
FB_DIVERGES = "E0852"
PROX_ALPHA = "E0853"
BAD_GROUPS = "E0854"
BAD_OPERANDS = "E0856"
CONV_GEOMETRY = "E0857"  # mdbm_conv: tiers, image and state sizes disagree
CONV_KERNEL = "E0858"  # mdbm_conv: the kernel size
CONV_GROUPS = "E0860"  # mdbm_conv: groups that span pixels
CONV_INPUT = "E0861"  # mdbm_conv: an input image that does not fit the first tier

# Step counts shared by every target, so torch, Triton and ONNX run the same arithmetic: Halley steps per
# unit of the sigmoid/softmax prox (from a closed-form start: enough for float64); the most safeguarded
# Newton/bisection steps for a softmax group's normalizer, which iterates until it is settled (bisection
# alone takes about 60 steps from a bracket of 1e3 to float64 rounding); steps between host checks that
# every group's normalizer (torch) or every row (torch, solver) has settled; the Anderson memory; and the most
# steps of the torch solver's warm-started prox (joint Newton/Halley) before it falls back to the safeguarded search.
NUMERICS = {"halley": 3, "normalizer": 100, "normalizer_check": 4, "check_every": 8, "anderson_memory": 5,
            "joint": 16}

GroupSpec = Any  # `...` (each part one group), an int (the group size in every part), or one size per part


def _check_groups(value: Any) -> Any:
    if isinstance(value, list):
        value = tuple(value)
    if value is Ellipsis or value is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                   for v in value):
        return value
    raise PydanticCustomError(BAD_GROUPS, "groups must be `...`, a positive int or a list of positive ints, "
                                          "got {value}", {"value": value})


def _check_m(value: float) -> float:
    if not 0 < value < 1:
        raise PydanticCustomError(BAD_M, "m must satisfy 0 < m < 1 (I - W >= m I), got {m}", {"m": value})
    return value


class Monotone(OpAttrs):
    kind: Literal["monotone"]
    m: float = 0.05
    _m = field_validator("m")(_check_m)


class Mdbm(OpAttrs):
    kind: Literal["mdbm"]
    m: float = 0.05
    groups: GroupSpec = None
    _m = field_validator("m")(_check_m)
    _groups = field_validator("groups", mode="before")(_check_groups)


class MdbmConv(OpAttrs):
    """The convolutional multi-tier monotone DBM weight (see _FixedPointConv in the torch template): `image` is
    the first tier's (height, width), `channels` the channels of each convolutional tier (tier t has
    image / 2^t pixels, so the image must divide by 2^(tiers - 1)), `kernel` the odd size of every (circular)
    convolution; `groups` as mdbm's (per part; inside a convolutional tier it counts channels at one pixel)."""

    kind: Literal["mdbm_conv"]
    m: float = 0.05
    # no defaults, but not required fields either: a missing one would read "missing its `weight` argument"
    image: Optional[tuple[PositiveInt, PositiveInt]] = None
    channels: Optional[tuple[PositiveInt, ...]] = None
    kernel: PositiveInt = 3
    groups: GroupSpec = None
    _m = field_validator("m")(_check_m)
    _groups = field_validator("groups", mode="before")(_check_groups)

    @field_validator("image", "channels", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _geometry(self) -> "MdbmConv":
        for name in ("image", "channels"):
            if getattr(self, name) is None:
                raise PydanticCustomError(CONV_GEOMETRY, "mdbm_conv needs `{name}=` (image=[height, width] of the "
                                                         "first tier, channels=[...] per tier)",
                                          {"name": name, "at": "weight"})
        if not self.channels:
            raise PydanticCustomError(CONV_GEOMETRY, "mdbm_conv needs at least one convolutional tier in "
                                                     "`channels`", {"at": "weight.channels"})
        stride = 2 ** (len(self.channels) - 1)
        if any(side % stride for side in self.image):
            raise PydanticCustomError(CONV_GEOMETRY, "an image of {image} does not halve {k} times for {t} tiers "
                                                     "(each tier has half the previous one's height and width)",
                                      {"image": list(self.image), "k": len(self.channels) - 1,
                                       "t": len(self.channels), "at": "weight.image"})
        if self.kernel % 2 == 0:
            raise PydanticCustomError(CONV_KERNEL, "the kernel size must be odd (a centred circular "
                                                   "convolution), got {k}", {"k": self.kernel, "at": "weight.kernel"})
        coarse = min(side // stride for side in self.image)
        if (self.kernel - 1) // 2 > coarse:
            raise PydanticCustomError(CONV_KERNEL, "a kernel of {k} wraps around the last tier more than once "
                                                   "(its side is {side}); use kernel <= {most}",
                                      {"k": self.kernel, "side": coarse, "most": 2 * coarse + 1,
                                       "at": "weight.kernel"})
        return self

    def tier_sizes(self) -> tuple[int, ...]:
        """The units of each convolutional tier: channels x (height / 2^t) x (width / 2^t)."""
        h, w = self.image
        return tuple(c * (h >> t) * (w >> t) for t, c in enumerate(self.channels))


class Unconstrained(OpAttrs):
    kind: Literal["unconstrained"]


class Relu(OpAttrs):
    kind: Literal["relu"]


class Sigmoid(OpAttrs):
    kind: Literal["sigmoid"]


class ProxSoftmax(OpAttrs):
    kind: Literal["prox_softmax"]
    # a default of `...` would make pydantic treat the field as required (`prox_softmax()` then failed with
    # "missing its `activation` argument"), so the default comes from a factory
    groups: GroupSpec = Field(default_factory=lambda: Ellipsis)
    _groups = field_validator("groups", mode="before")(_check_groups)


class _Solver(OpAttrs):
    alpha: float = 1.0
    tol: float = 1e-5
    max_iter: int = 100
    anderson: bool = False
    strict: bool = False  # an unconverged solve raises instead of warning

    @field_validator("alpha", "tol")
    @classmethod
    def _positive(cls, value: float, info: Any) -> float:
        if not value > 0:
            raise PydanticCustomError(BAD_SOLVER, "{name} must be > 0, got {value}",
                                      {"name": info.field_name, "value": value})
        return value

    @field_validator("max_iter")
    @classmethod
    def _iterations(cls, value: int) -> int:
        if value < 1:
            raise PydanticCustomError(BAD_SOLVER, "max_iter must be >= 1, got {value}", {"value": value})
        return value


class ForwardBackward(_Solver):
    kind: Literal["forward_backward"]
    alpha: float = 0.1


class PeacemanRachford(_Solver):
    kind: Literal["peaceman_rachford"]


Weight = Annotated[Union[Monotone, Mdbm, MdbmConv, Unconstrained], Field(discriminator="kind")]
Activation = Annotated[Union[Relu, Sigmoid, ProxSoftmax], Field(discriminator="kind")]
Solver = Annotated[Union[ForwardBackward, PeacemanRachford], Field(discriminator="kind")]


class FixedPointAttrs(OpAttrs):
    state: tuple[PositiveInt, ...]
    weight: Weight = Monotone(kind="monotone")
    activation: Activation = Relu(kind="relu")
    solver: Solver = PeacemanRachford(kind="peaceman_rachford")

    @model_validator(mode="after")
    def _consistent(self) -> "FixedPointAttrs":
        alpha, m = self.solver.alpha, getattr(self.weight, "m", None)
        if self.activation.kind != "relu" and alpha > 1:
            raise PydanticCustomError(PROX_ALPHA, "the {act} prox needs alpha <= 1 (its closed form has "
                                                  "1/alpha - 1 >= 0), got alpha={alpha}",
                                      {"act": self.activation.kind, "alpha": alpha, "at": "solver.alpha"})
        if self.solver.kind == "forward_backward" and m is not None and alpha * m >= 2:
            raise PydanticCustomError(FB_DIVERGES, "forward-backward with alpha={alpha} can never converge: it needs "
                                                   "alpha < 2m/L^2 where L = |I - W| >= m, so alpha < 2/m = {bound}; "
                                                   "use a smaller alpha or peaceman_rachford",
                                      {"alpha": alpha, "bound": round(2 / m, 6), "at": "solver.alpha"})
        self.softmax_groups()
        self.weight_groups()
        if self.weight.kind == "mdbm_conv":
            self._check_conv()
        return self

    def _check_conv(self) -> None:
        """mdbm_conv: the state is the convolutional tiers (channels-last images), then at most one dense part;
        softmax and hollow groups inside a tier hold channels of one pixel."""
        conv: MdbmConv = self.weight  # type: ignore[assignment]
        tiers = conv.tier_sizes()
        if len(self.state) not in (len(tiers), len(tiers) + 1) or self.state[:len(tiers)] != tiers:
            raise PydanticCustomError(CONV_GEOMETRY, "the state {state} must be the convolutional tiers {tiers} "
                                                     "(channels x height x width, halving per tier) followed by at "
                                                     "most one dense part", {"state": list(self.state),
                                                                             "tiers": list(tiers), "at": "state"})
        for what, groups in (("activation.groups", self.softmax_groups()), ("weight.groups", self.weight_groups())):
            for t, (channels, g) in enumerate(zip(conv.channels, groups or ())):
                if channels % g:
                    raise PydanticCustomError(CONV_GROUPS, "tier {t} has {c} channels per pixel, which do not "
                                                           "split into groups of {g} (a group holds channels of "
                                                           "one pixel)", {"t": t, "c": channels, "g": g, "at": what})

    @property
    def size(self) -> int:
        return sum(self.state)

    def _per_part(self, spec: Any, at: str) -> tuple[int, ...]:
        sizes = self.state
        if spec is Ellipsis:
            groups = sizes
        elif isinstance(spec, int):
            groups = (spec,) * len(sizes)
        elif len(spec) != len(sizes):
            raise PydanticCustomError(BAD_GROUPS, "{n} group sizes for {k} state parts; give one per part",
                                      {"n": len(spec), "k": len(sizes), "at": at})
        else:
            groups = spec
        for size, g in zip(sizes, groups):
            if size % g:
                raise PydanticCustomError(BAD_GROUPS, "a state part of {size} units does not split into groups "
                                                      "of {g}", {"size": size, "g": g, "at": at})
        return tuple(groups)

    def softmax_groups(self) -> tuple[int, ...] | None:
        """The categorical group size in each state part (None unless the activation is prox_softmax)."""
        if self.activation.kind != "prox_softmax":
            return None
        return self._per_part(self.activation.groups, "activation.groups")

    def weight_groups(self) -> tuple[int, ...] | None:
        """The size of the blocks on which an mdbm weight is hollow, per state part (None for other weights)."""
        if self.weight.kind not in ("mdbm", "mdbm_conv"):
            return None
        softmax = self.softmax_groups()
        spec = self.weight.groups if self.weight.groups is not None else (softmax or Ellipsis)
        if spec is Ellipsis and self.weight.kind == "mdbm_conv":  # a tier's group: the channels of one pixel
            channels = self.weight.channels
            spec = tuple(channels) + tuple(self.state[len(channels):])
        groups = self._per_part(spec, "weight.groups")
        if softmax is not None and any(g % s for g, s in zip(groups, softmax)):
            raise PydanticCustomError(BAD_GROUPS, "the hollow blocks of the weight ({groups}) must be unions of the "
                                                  "softmax groups ({softmax}): units of one categorical variable "
                                                  "do not interact", {"groups": list(groups),
                                                                      "softmax": list(softmax),
                                                                      "at": "weight.groups"})
        return groups

    def numerics(self) -> dict[str, int]:
        return dict(NUMERICS)

    def runtime(self) -> dict[str, Any]:
        """The constructor arguments of the generated `_FixedPoint` module, as plain Python values."""
        return {
            "parts": self.state, "weight": self.weight.kind, "m": getattr(self.weight, "m", 0.0),
            "weight_groups": self.weight_groups(), "activation": self.activation.kind,
            "softmax_groups": self.softmax_groups(), "solver": self.solver.kind, "alpha": self.solver.alpha,
            "tol": self.solver.tol, "max_iter": self.solver.max_iter, "anderson": self.solver.anderson,
            "strict": self.solver.strict,
        } | ({"image": self.weight.image, "channels": self.weight.channels, "kernel": self.weight.kernel}
             if self.weight.kind == "mdbm_conv" else {})

    def onnx_export_elements(self) -> int:
        """Elements of the tensors the ONNX target exports beyond the declared parameters (mdbm_conv: V's or W's
        kernel, N^2 h w for N polyphase channels on the last tier's h x w grid, and the dense part's Schur pieces,
        or W's coupling and dense block), so a state too large for one .onnx file is refused before they are
        built (E0611)."""
        if self.weight.kind != "mdbm_conv":
            return 0
        conv: MdbmConv = self.weight  # type: ignore[assignment]
        tiers = len(conv.channels)
        grid = (conv.image[0] >> (tiers - 1)) * (conv.image[1] >> (tiers - 1))
        poly = sum(c * 4 ** (tiers - 1 - t) for t, c in enumerate(conv.channels))
        dense = self.size - sum(conv.tier_sizes())
        couplings = 1 if self.solver.kind == "forward_backward" else 2  # Wcl; or MclT and Q
        return poly * poly * grid + couplings * dense * poly * grid + dense * dense


def _infer(ctx: InferContext) -> TensorType:
    x = float_input(ctx)
    if x.rank < 1:
        raise ctx.error(f"needs at least one dim, got {ctx.describe(0)}", BAD_OPERANDS)
    d = ctx.static(0, -1, "the input feature dim (last)")
    attrs: FixedPointAttrs = ctx.attrs  # type: ignore[assignment]
    if len(ctx.types) > 1:
        if ctx.types[1].shape != x.shape:
            raise ctx.error(f"the mask {ctx.describe(1)} must have the shape of {ctx.describe(0)}", BAD_OPERANDS)
        bounds = [sum(attrs.state[:i + 1]) for i in range(len(attrs.state))]
        if d not in bounds:
            raise ctx.error(f"with a mask, {ctx.describe(0)} holds the leading state units, so its last dim must "
                            f"end at a part boundary ({', '.join(map(str, bounds))}), got {d}", BAD_OPERANDS)
    elif attrs.weight.kind == "mdbm_conv":
        h, w = attrs.weight.image
        if d % (h * w):
            raise ctx.error(f"mdbm_conv reads {ctx.describe(0)} as a channels-last image of {h}x{w} pixels (the first "
                            f"tier's), so its last dim must be a multiple of {h * w}, got {d}", CONV_INPUT)
    return x.with_shape(x.shape[:-1] + (attrs.size,))


def _params(ctx: InferContext) -> dict[str, ParamSpec]:
    attrs: FixedPointAttrs = ctx.attrs  # type: ignore[assignment]
    n = attrs.size
    if attrs.weight.kind == "mdbm_conv":
        return _conv_params(ctx, attrs)
    params = {"A": ParamSpec((n, n))} if attrs.weight.kind in ("monotone", "mdbm") else {"W": ParamSpec((n, n))}
    if attrs.weight.kind == "monotone":
        params["B"] = ParamSpec((n, n))
    if len(ctx.types) == 1:
        params["U"] = ParamSpec((n, ctx.static(0, -1, "the input feature dim (last)")))
    params["bias"] = ParamSpec((n,))
    return params


def _conv_params(ctx: InferContext, attrs: FixedPointAttrs) -> dict[str, ParamSpec]:
    """mdbm_conv: a k x k kernel inside every tier (`A<t>`), a stride-2 one from each tier into the next
    (`A<t>_<t+1>`), a position-dependent map from the dense part into every tier (`A_dense<t>`), a k x k
    input convolution into the first tier without a mask (`U_conv`), and a bias per unit."""
    conv: MdbmConv = attrs.weight  # type: ignore[assignment]
    k, c = conv.kernel, conv.channels
    params = {f"A{t}": ParamSpec((c[t], c[t], k, k)) for t in range(len(c))}
    params |= {f"A{t}_{t + 1}": ParamSpec((c[t + 1], c[t], k, k)) for t in range(len(c) - 1)}
    if len(attrs.state) > len(c):
        h, w = conv.image
        params |= {f"A_dense{t}": ParamSpec((c[t], attrs.state[-1], h >> t, w >> t)) for t in range(len(c))}
    if len(ctx.types) == 1:
        h, w = conv.image
        params["U_conv"] = ParamSpec((c[0], ctx.static(0, -1, "the input feature dim (last)") // (h * w), k, k))
    params["bias"] = ParamSpec((attrs.size,))
    return params


def _flops(ctx: InferContext) -> Dim:
    """Per row and iteration, W z (2 n^2) plus the prox; counted for max_iter iterations (an upper bound)."""
    attrs: FixedPointAttrs = ctx.attrs  # type: ignore[assignment]
    n = attrs.size
    rows = dim_div(ctx.node.type.numel(), n)
    if attrs.weight.kind == "mdbm_conv":  # per iteration a product per frequency, two FFTs, the dense part
        conv: MdbmConv = attrs.weight  # type: ignore[assignment]
        tiers = len(conv.channels)
        poly = sum(c * 4 ** (tiers - 1 - t) for t, c in enumerate(conv.channels))
        h, w = (side >> (tiers - 1) for side in conv.image)
        dense = n - sum(conv.tier_sizes())
        fft = 10 * poly * h * w * max(1, (h * w).bit_length())
        per_iteration = 8 * poly * poly * h * (w // 2 + 1) + 2 * fft + 8 * dense * n + \
            (400 if attrs.activation.kind != "relu" else 4) * n
        return dim_mul(rows, attrs.solver.max_iter * per_iteration)
    per_iteration = 2 * n * n + (400 if attrs.activation.kind != "relu" else 4) * n
    inject = 2 * n * ctx.static(0, -1, "the input feature dim (last)") if len(ctx.types) == 1 else 0
    return dim_mul(rows, inject + attrs.solver.max_iter * per_iteration)


register(OpDef("fixed_point", "monotone equilibrium layer: z = sigma(W z + U x + b) with I - W >= m I (monDEQ, "
                              "mean-field monotone DBM); state parts are named slices",
               ("x", "mask"), FixedPointAttrs, infer=_infer, params=_params, flops=_flops, parts="state",
               optional=("mask",), export_weights=True))
