"""The monotone fixed-point layer (monDEQ / monotone DBM): its guarantees, checked on the generated code.

- the parametrizations give I - W >= m I for any parameters (and the DBM form is symmetric and hollow);
- the fixed point is unique: random starts agree, and it solves the mean-field equations;
- implicit gradients match finite differences (gradcheck, float64);
- an unconstrained W of the same size loses all of that;
- compile-time checks; targets agreeing is tests/test_op_matrix.py's job (tests/op_samples/fixed_point.py)
  and tests/test_parity.py's (specs/mdbm_mnist.nnspec).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specc.diagnostics import SpeccError
from targets import compile_graph, python_module


def _layer(tmp_path_factory, args: str, inputs: str = "x: f32[B, 5]", dtype=torch.float64):
    """The `_FixedPoint` module of a one-layer spec (as float64 unless told)."""
    spec = tmp_path_factory.mktemp("fp") / "fp.nnspec"
    names = ", ".join(decl.split(":")[0] for decl in inputs.split(";"))
    decls = "\n".join(f"    input {decl.strip()}" for decl in inputs.split(";"))
    spec.write_text(f"model fp() {{\n{decls}\n    output y = fixed_point({names}, {args}).part0\n}}\n")
    _, model = python_module(compile_graph(spec), "torch")
    torch.manual_seed(0)
    return model.to(dtype).y  # the layer is named after the output it feeds


MDBM = "state=[6, 4], weight=mdbm(m=0.1), activation=prox_softmax(groups=[2, 4]), " \
       "solver=peaceman_rachford(alpha=0.5, tol=1e-9, max_iter=1000)"
MONOTONE = "state=[6, 4], weight=monotone(m=0.5), activation=relu(), " \
           "solver=forward_backward(alpha=0.2, tol=1e-9, max_iter=3000)"
FREE = "state=[6, 4], weight=unconstrained(), activation=prox_softmax(groups=[2, 4]), " \
       "solver=peaceman_rachford(alpha=0.5, tol=1e-9, max_iter=1000)"

# one softmax group of 4 units (the input's) and one of 3: masks that observe part of the first
PARTIAL = "state=[4, 3], weight=mdbm(m=0.2), activation=prox_softmax(), solver={}"


@pytest.fixture(scope="module")
def mdbm(tmp_path_factory):
    return _layer(tmp_path_factory, MDBM)


@pytest.fixture(scope="module")
def monotone(tmp_path_factory):
    return _layer(tmp_path_factory, MONOTONE)


@pytest.fixture(scope="module")
def free(tmp_path_factory):
    return _layer(tmp_path_factory, FREE)


def _randomize(layer, seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def _inputs(seed: int = 1, rows: int = 7) -> torch.Tensor:
    return torch.randn(rows, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0))
def test_monotone_forms_keep_i_minus_w_above_m(mdbm, monotone, seed, scale):
    for layer in (mdbm, monotone):
        _randomize(layer, seed, scale)
        with torch.no_grad():
            W = layer.weight_matrix()
        sym = torch.eye(layer.n, dtype=W.dtype) - (W + W.t()) / 2
        assert torch.linalg.eigvalsh(sym).min() >= layer.m - 1e-9 * (1 + W.abs().max())
    # the DBM form: symmetric, and no interaction inside a softmax group (2 | 2 | 2 | 4)
    W = mdbm.weight_matrix().detach()
    assert torch.equal(W, W.t())
    for start, size in [(0, 2), (2, 2), (4, 2), (6, 4)]:
        assert torch.all(W[start:start + size, start:start + size] == 0)


def _mean_field(layer, x, z):
    """softmax(W z + U x + b) per group: the mean-field equations z must satisfy."""
    pre = z @ layer.weight_matrix().t() + x @ layer.U.t() + layer.bias
    parts = [torch.softmax(pre[:, s:s + n].reshape(len(x), -1, g), -1).reshape(len(x), n)
             for s, n, g in layer.softmax_blocks]
    return torch.cat(parts, 1)


@pytest.mark.parametrize("which", ["mdbm", "monotone"])
def test_same_fixed_point_from_five_random_starts(which, request):
    layer = request.getfixturevalue(which)
    _randomize(layer, 3, 1.0 if which == "mdbm" else 0.1)
    x = _inputs()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        results = [layer(x, start=torch.randn(len(x), layer.n, generator=gen, dtype=x.dtype) * 3) for _ in range(5)]
    for z in results[1:]:
        torch.testing.assert_close(z, results[0], rtol=0, atol=1e-6)


def test_mean_field_residual(mdbm):
    _randomize(mdbm, 5, 1.0)
    x = _inputs()
    with torch.no_grad():
        q = mdbm(x)
        assert (q - _mean_field(mdbm, x, q)).abs().max() <= 1e-5
    assert torch.allclose(q.reshape(len(x), -1)[:, 6:].sum(-1), torch.ones(len(x), dtype=q.dtype))


def test_relu_fixed_point_solves_the_equation(monotone):
    _randomize(monotone, 6, 0.1)
    x = _inputs()
    with torch.no_grad():
        z = monotone(x)
        residual = z - torch.relu(z @ monotone.weight_matrix().t() + x @ monotone.U.t() + monotone.bias)
    assert residual.abs().max() <= 1e-6


@pytest.mark.parametrize("args, inputs", [
    ("state=[2, 3], weight=mdbm(m=0.2), activation=prox_softmax(groups=[2, 3]), "
     "solver=peaceman_rachford(alpha=0.7, tol=1e-12, max_iter=2000)", "x: f32[B, 3]"),
    ("state=[3, 2], weight=monotone(m=0.3), activation=sigmoid(), "
     "solver=forward_backward(alpha=0.3, tol=1e-12, max_iter=3000)", "x: f32[B, 3]"),
    ("state=[2, 3], weight=mdbm(m=0.2), activation=prox_softmax(groups=[1, 3]), "
     "solver=forward_backward(alpha=0.5, tol=1e-12, max_iter=3000)", "x: f32[B, 2]; mask: f32[B, 2]"),
    (PARTIAL.format("peaceman_rachford(alpha=0.5, tol=1e-12, max_iter=3000)"), "x: f32[B, 4]; mask: f32[B, 4]"),
    (PARTIAL.format("forward_backward(alpha=0.5, tol=1e-12, max_iter=3000)"), "x: f32[B, 4]; mask: f32[B, 4]"),
], ids=["mdbm-pr", "sigmoid-fb", "clamped-fb", "partly-observed-pr", "partly-observed-fb"])
def test_implicit_gradient_matches_finite_differences(args, inputs, tmp_path_factory):
    layer = _layer(tmp_path_factory, args, inputs)
    _randomize(layer, 7, 0.3)
    gen = torch.Generator().manual_seed(8)
    d = int(inputs.split("]")[0].split(",")[-1])
    x = torch.randn(3, d, generator=gen, dtype=torch.float64, requires_grad=True)
    if args.startswith(PARTIAL[:20]):  # units 1 and 3 of the 4-unit group observed: values leaving the rest mass
        x = (torch.rand(3, d, generator=gen, dtype=torch.float64) * 0.4).requires_grad_()
    mask = (torch.arange(3 * d).reshape(3, d) % 2).double() if layer.clamp else None
    names = [name for name, _ in layer.named_parameters()]

    def run(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x, mask))

    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    # fast mode checks random projections of the Jacobian: the same test, far fewer solves
    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_unconstrained_weight_loses_uniqueness_or_convergence(free):
    """The same sizes with a free, strongly coupled W: random starts disagree or the solver does not settle."""
    _randomize(free, 9, 0.3)
    with torch.no_grad():
        free.W.copy_(free.W * 4 + free.W.t() * 4)
    x = _inputs()
    gen = torch.Generator().manual_seed(10)
    with torch.no_grad():
        results = [free(x, start=torch.randn(len(x), free.n, generator=gen, dtype=x.dtype) * 3) for _ in range(5)]
        residual = max((z - _mean_field(free, x, z)).abs().max().item() for z in results)
    spread = max((z - results[0]).abs().max().item() for z in results[1:])
    assert spread > 1e-3 or residual > 1e-3


def test_forward_backward_step_is_guarded_at_run_time(monotone):
    """The spec's alpha 0.2 does not contract here (|I - 0.2 A| >= 1); the layer then steps with mu/L^2 (mu the
    least eigenvalue of A's symmetric part), which contracts, and converges."""
    _randomize(monotone, 11, 0.3)
    W, alpha, _ = monotone.operators()
    eye = torch.eye(monotone.n, dtype=W.dtype)
    A = eye - W.detach()
    assert torch.linalg.matrix_norm(eye - 0.2 * A, ord=2) >= 1
    mu = torch.linalg.eigvalsh((A + A.t()) / 2)[0]
    torch.testing.assert_close(alpha, mu / torch.linalg.matrix_norm(A, ord=2) ** 2)
    assert torch.linalg.matrix_norm(eye - alpha * A, ord=2) < 1
    x = _inputs()
    with torch.no_grad():
        z = monotone(x)
        residual = z - torch.relu(z @ W.t() + x @ monotone.U.t() + monotone.bias)
    assert residual.abs().max() <= 1e-5


FB_MDBM = "state=[6, 4], weight=mdbm(m=0.1), activation=prox_softmax(groups=[2, 4]), " \
          "solver=forward_backward(alpha=1.0, tol=1e-9, max_iter={iters}{strict})"


def test_forward_backward_mdbm_step_is_optimal_for_the_symmetric_operator(tmp_path_factory):
    """For the symmetric DBM weight the step is 2/(lambda_min + lambda_max) (capped at 1 for the softmax prox) when
    the spec's alpha does not contract; it reaches the fixed point Peaceman-Rachford finds."""
    layer = _layer(tmp_path_factory, FB_MDBM.format(iters=2000, strict=""))
    _randomize(layer, 13, 1.0)
    W, alpha, _ = layer.operators()
    lam = torch.linalg.eigvalsh(torch.eye(layer.n, dtype=W.dtype) - W.detach())
    if (1 - lam[-1]).abs() >= 1:
        torch.testing.assert_close(alpha, (2 / (lam[0] + lam[-1])).clamp(max=1.0))
    assert torch.maximum((1 - alpha * lam).abs().max(), torch.tensor(0.0, dtype=W.dtype)) < 1
    x = _inputs()
    with torch.no_grad():
        q = layer(x)
        assert (q - _mean_field(layer, x, q)).abs().max() <= 1e-7


def test_unconverged_forward_backward_warns_or_raises(tmp_path_factory):
    """max_iter too small for the tolerance: a RuntimeWarning naming the residual, or an error with strict=true."""
    x = _inputs()
    layer = _layer(tmp_path_factory, FB_MDBM.format(iters=3, strict=""))
    _randomize(layer, 13, 1.0)
    with pytest.warns(RuntimeWarning, match="did not converge in 3 iterations: relative residual"):
        with torch.no_grad():
            layer(x)
    strict = _layer(tmp_path_factory, FB_MDBM.format(iters=3, strict=", strict=true"))
    _randomize(strict, 13, 1.0)
    with pytest.raises(RuntimeError, match="did not converge"):
        with torch.no_grad():
            strict(x)
    import warnings
    with warnings.catch_warnings():  # converged solves stay quiet, forward and backward
        warnings.simplefilter("error")
        layer.max_iter = 2000
        layer(x).sum().backward()


def test_forward_backward_stops_in_float32(tmp_path_factory):
    """The stopping test is reachable in float32: a tol of 1e-9 (under float32 rounding) stops at the 32-ulp floor
    well before max_iter, without a warning, near the float64 fixed point."""
    layer = _layer(tmp_path_factory, FB_MDBM.format(iters=2000, strict=", strict=true"))
    _randomize(layer, 13, 1.0)
    x = _inputs()
    with torch.no_grad():
        exact = layer(x)
        layer.float()
        calls = []
        layer.prox, prox = (lambda v, a: calls.append(1) or prox(v, a)), layer.prox
        try:
            single = layer(x.float())
        finally:
            del layer.prox
            layer.double()
    assert len(calls) < 1000
    assert (single.double() - exact).abs().max() <= 1e-4


def test_forward_backward_compiles_fullgraph(monotone):
    """torch.compile(fullgraph=True) of a forward-backward layer: its loop carries s and z = s, which must not alias
    (while_loop refused that: "cond_fn might be aliasing the input or the output")."""
    _randomize(monotone, 6, 0.1)
    x = _inputs()
    with torch.no_grad():
        expected = monotone(x)
        got = torch.compile(monotone, fullgraph=True)(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_anderson_reaches_the_same_fixed_point(mdbm):
    _randomize(mdbm, 12, 1.0)
    x = _inputs()
    with torch.no_grad():
        plain = mdbm(x)
        mdbm.anderson = True
        try:
            accelerated = mdbm(x)
        finally:
            mdbm.anderson = False
    torch.testing.assert_close(accelerated, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("args, inputs, code", [
    ("state=[4], weight=monotone(m=0)", "x: f32[B, 4]", "E0850"),
    ("state=[4], weight=mdbm(m=1.5)", "x: f32[B, 4]", "E0850"),
    ("state=[4], solver=peaceman_rachford(alpha=-1.0)", "x: f32[B, 4]", "E0851"),
    ("state=[4], solver=forward_backward(alpha=50.0), weight=monotone(m=0.1)", "x: f32[B, 4]", "E0852"),
    ("state=[4], activation=sigmoid(), solver=peaceman_rachford(alpha=2.0)", "x: f32[B, 4]", "E0853"),
    ("state=[4, 6], activation=prox_softmax(groups=4)", "x: f32[B, 4]", "E0854"),
    ("state=[4, 6], activation=prox_softmax(groups=[2, 3]), weight=mdbm(groups=[2, 2])", "x: f32[B, 4]", "E0854"),
    ("state=[4, 6]", "x: f32[B, 5]; mask: f32[B, 5]", "E0856"),
])
def test_compile_time_checks(args, inputs, code, tmp_path):
    names = ", ".join(decl.split(":")[0] for decl in inputs.split(";"))
    decls = "\n".join(f"    input {decl.strip()}" for decl in inputs.split(";"))
    spec = tmp_path / "bad.nnspec"
    spec.write_text(f"model bad() {{\n{decls}\n    output y = fixed_point({names}, {args}).part0\n}}\n")
    with pytest.raises(SpeccError) as err:
        compile_graph(spec)
    assert err.value.code == code, err.value


# ---------------------------------------------------------------- the softmax prox against an exact reference
def _prox_reference(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """The simplex prox by an independent route: per unit z = W(beta e^t) / beta = wrightomega(log beta + t) / beta
    (scipy), t = v/alpha - 1 - mu, with mu from 200 bisection steps on sum z = 1 (float64 throughout)."""
    np = pytest.importorskip("numpy")
    wrightomega = pytest.importorskip("scipy.special").wrightomega
    v = v.double().numpy()
    if alpha == 1.0:
        return torch.softmax(torch.from_numpy(v), -1)
    beta, s = 1 / alpha - 1, v / alpha - 1

    def z_of(mu):
        return np.real(wrightomega(np.log(beta) + s - mu)) / beta

    lo = s.max(-1, keepdims=True) - beta - 1.0
    hi = s.max(-1, keepdims=True) + np.log(s.shape[-1]) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        big = z_of(mid).sum(-1, keepdims=True) > 1
        lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
    z = z_of((lo + hi) / 2)
    return torch.from_numpy(z / z.sum(-1, keepdims=True))


def _generated(layer, name: str):
    import sys
    return getattr(sys.modules[type(layer).__module__], name)


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("groups", [2, 10, 1000])
def test_softmax_prox_is_exact_in_float64(mdbm, alpha, groups):
    """Error <= 1e-10 against the reference for alpha 1e-3..1 and groups up to 1,000, including one dominant unit
    over a flat rest (where 10 fixed normalizer steps left 2e-9 at alpha 1e-3)."""
    prox = _generated(mdbm, "_prox_simplex")
    gen = torch.Generator().manual_seed(groups)
    flat = torch.randn(3, groups, generator=gen, dtype=torch.float64)
    outlier = flat * 0.01
    outlier[:, 0] += 1.0
    for v in (flat * 0.01, flat, flat * 10, outlier):
        z = prox(v, torch.tensor(alpha, dtype=torch.float64))
        assert (z - _prox_reference(v, alpha)).abs().max() <= 1e-10


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_softmax_prox_float32_ignores_a_large_common_offset(mdbm, alpha):
    """The prox is shift-invariant; in float32 a 1e4 offset lost 2.6e-4 before the group max was subtracted."""
    prox = _generated(mdbm, "_prox_simplex")
    v = (torch.randn(8, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 1e4).float()
    reference = _prox_reference(v.double() - 1e4, alpha)
    assert (prox(v, torch.tensor(alpha)).double() - reference).abs().max() <= 1e-6


def test_prox_softmax_without_arguments_is_one_group_per_part(tmp_path_factory):
    layer = _layer(tmp_path_factory, "state=[3, 4], weight=mdbm(m=0.1), activation=prox_softmax()")
    assert [(start, size, g) for start, size, g in layer.softmax_blocks] == [(0, 3, 3), (3, 4, 4)]


# ---------------------------------------------------------------- the solver's warm-started prox and closed-form backward
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Softmax groups of 2, 10 and 1,000 units in one state: the layout the flat, warm-started prox runs on."""
    return _layer(tmp_path_factory, "state=[4, 20, 1000], weight=mdbm(m=0.1), activation=prox_softmax(groups=[2, 10, "
                                    "1000]), solver=peaceman_rachford(alpha=0.5, tol=1e-9, max_iter=1000)",
                  "x: f32[B, 4]")


def _per_block(layer, v, alpha):
    return torch.cat([_prox_reference(v[:, s:s + n].reshape(-1, g), alpha).reshape(len(v), n)
                      for s, n, g in layer.softmax_blocks], 1)


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 0.5, 1.0])
def test_warm_started_prox_is_exact_in_float64(mixed, alpha):
    """_prox_fast (every group in one pass; Newton on the normalizers and Halley on the units jointly) within 1e-10 of
    the reference, cold and warm-started from the solution for a nearby input and for a far one (where the units
    restart from the closed form), including one dominant unit over a flat rest."""
    gen = torch.Generator().manual_seed(3)
    a = torch.tensor(alpha, dtype=torch.float64)
    flat = torch.randn(3, mixed.n, generator=gen, dtype=torch.float64)
    outlier = flat * 0.01
    outlier[:, ::7] += 1.0
    for v in (flat * 0.01, flat, flat * 10, outlier):
        z, state = mixed._prox_fast(v, a, None)
        assert (z - _per_block(mixed, v, alpha)).abs().max() <= 1e-10
        for moved in (v + 1e-3 * flat.flip(0), v + 3 * flat.flip(0)):
            warm, _ = mixed._prox_fast(moved, a, state)
            assert (warm - _per_block(mixed, moved, alpha)).abs().max() <= 1e-10


@pytest.mark.parametrize("dtype, alpha", [(torch.float64, 1e-3), (torch.float32, 1e-2)])
def test_warm_started_prox_with_a_dominant_unit_at_small_alpha(tmp_path_factory, dtype, alpha):
    """Warm, s is the last call's t, which reaches beta = 1/alpha - 1 at a group's top: exp(s) overflowed (alpha
    1e-3 in float64), the bracket's upper end became infinite and Newton could run off and settle silently on a
    wrong point (2 of these 60 draws, error 0.99: all mass on another unit). A dominant unit per group of 10,
    moved by 1e-2, the solver's move between iterations at small alpha."""
    layer = _layer(tmp_path_factory, "state=[20], weight=mdbm(m=0.1), activation=prox_softmax(groups=10)")
    a = torch.tensor(alpha, dtype=dtype)
    worst = 0.0
    for seed in range(100, 160):
        base = torch.randn(4, 20, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        v = base * 0.01
        v[:, ::10] += 1.0
        moved = (v + 1e-2 * base.flip(0)).to(dtype)
        try:
            _, state = layer.to(dtype)._prox_fast(v.to(dtype), a, None)
            warm, _ = layer._prox_fast(moved, a, state)
        finally:
            layer.double()
        worst = max(worst, (warm.double() - _per_block(layer, moved.double(), alpha)).abs().max().item())
    assert worst <= (1e-10 if dtype == torch.float64 else 1e-5)


def test_warm_started_prox_float32_ignores_a_large_common_offset(mixed):
    """As _prox_simplex: exact for the float32 input it is given (compared with the float64 prox of that input)."""
    v = torch.randn(4, mixed.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = torch.tensor(0.5)
    near = v + 0.01 * v.flip(0)
    layer = mixed.float()
    try:
        z, state = layer._prox_fast((v + 1e4).float(), a, None)
        warm, _ = layer._prox_fast((near + 1e4).float(), a, state)
    finally:
        mixed.double()
    for out, given in ((z, v), (warm, near)):
        exact = _per_block(mixed, (given + 1e4).float().double() - 1e4, 0.5)
        assert (out.double() - exact).abs().max() <= 1e-6


def _unrolled(layer, x, mask, steps: int) -> torch.Tensor:
    """The solver's iteration with autograd through every step and through the differentiable prox (`layer.prox`):
    what the closed-form implicit backward must reproduce."""
    W, alpha, _ = layer.operators()
    eye = torch.eye(layer.n, dtype=W.dtype)
    V = torch.linalg.inv(eye + alpha * (eye - W))  # differentiable here, unlike the layer's
    clamp = observed = None
    if layer.clamp:
        pad = x.new_zeros(len(x), layer.n - x.shape[1])
        clamp, observed = torch.cat([x, pad], 1), torch.cat([mask > 0, pad.bool()], 1)
        inj = layer.bias.expand(len(x), layer.n)
    else:
        inj = x @ layer.U.t() + layer.bias
    s = torch.zeros_like(inj)
    if clamp is not None and layer.solver == "forward_backward":
        s = torch.where(observed, clamp, s)
    for _ in range(steps):
        z = layer._readout(layer.prox, s, alpha, clamp, observed)
        s = layer._map(layer.prox, s, z, inj, W, alpha, V, clamp, observed)
    return layer._readout(layer.prox, s, alpha, clamp, observed)


@pytest.mark.parametrize("args, inputs", [
    ("state=[4, 4, 3], weight=mdbm(m=0.2), activation=prox_softmax(groups=[2, 4, 3]), "
     "solver=peaceman_rachford(alpha=0.5, tol=1e-13, max_iter=2000)", "x: f32[B, 4]; mask: f32[B, 4]"),
    ("state=[4, 4, 3], weight=mdbm(m=0.2), activation=prox_softmax(groups=[2, 4, 3]), "
     "solver=forward_backward(alpha=0.5, tol=1e-13, max_iter=3000)", "x: f32[B, 4]; mask: f32[B, 4]"),
    ("state=[5, 3], weight=monotone(m=0.3), activation=sigmoid(), "
     "solver=peaceman_rachford(alpha=0.8, tol=1e-13, max_iter=2000)", "x: f32[B, 3]"),
    ("state=[5, 3], weight=monotone(m=0.5), activation=relu(), "
     "solver=forward_backward(alpha=0.2, tol=1e-13, max_iter=3000)", "x: f32[B, 3]"),
], ids=["mdbm-pr-clamped", "mdbm-fb-clamped", "sigmoid-pr", "relu-fb"])
def test_closed_form_backward_matches_unrolled_backprop(args, inputs, tmp_path_factory):
    """The implicit gradients (closed-form adjoint: prox Jacobians and dV = alpha V dW V, no autograd through the
    solve) equal backpropagation through 400 unrolled iterations, for every parameter and the input."""
    layer = _layer(tmp_path_factory, args, inputs)
    _randomize(layer, 21, 0.3)
    gen = torch.Generator().manual_seed(22)
    d = int(inputs.split("]")[0].split(",")[-1])
    x = torch.rand(5, d, generator=gen, dtype=torch.float64)
    mask = (torch.rand(5, d, generator=gen) < 0.5).double() if layer.clamp else None
    direction = torch.randn(5, layer.n, generator=gen, dtype=torch.float64)
    grads = []
    for run in (lambda x: layer(x, mask), lambda x: _unrolled(layer, x, mask, 400)):
        layer.zero_grad()
        x_ = x.clone().requires_grad_()
        (run(x_) * direction).sum().backward()
        grads.append([x_.grad] + [p.grad.clone() for p in layer.parameters()])
    for implicit, unrolled in zip(*grads):
        assert (implicit - unrolled).abs().max() <= 1e-9 * max(1.0, unrolled.abs().max().item())


def test_log_marginals_are_the_pre_activation_logits_up_to_a_group_constant(tmp_path_factory):
    """The paper's objective scores the layer's pre-activation logits W q + b (times learned temperatures); the
    spec needs no logits output for it: at the fixed point q = softmax(W q + b) per free group, so log q differs
    from the logits by a constant per group and log_softmax(t log q) = log_softmax(t (W q + b)) for any t
    (examples/train_mdbm.py relies on this)."""
    layer = _layer(tmp_path_factory, "state=[4, 4, 3], weight=mdbm(m=0.1), activation=prox_softmax(groups=[2, 4, 3]), "
                                     "solver=peaceman_rachford(alpha=0.5, tol=1e-12, max_iter=2000)",
                   "x: f32[B, 4]; mask: f32[B, 4]")
    _randomize(layer, 31, 1.0)
    gen = torch.Generator().manual_seed(32)
    pixels = torch.rand(6, 2, generator=gen) < 0.5
    x = torch.stack([~pixels, pixels], -1).reshape(6, 4).double()
    mask = (torch.rand(6, 2, generator=gen) < 0.5).repeat_interleave(2, 1).double()
    with torch.no_grad():
        q = layer(x, mask)
        logits = q @ layer.weight_matrix().t() + layer.bias
    assert torch.equal(q[:, :4][mask > 0], x[mask > 0])  # observed units as given
    free = torch.cat([mask == 0, torch.ones(6, 7, dtype=torch.bool)], 1)
    for start, size, g in layer.softmax_blocks:
        blocks = slice(start, start + size)
        rows = free[:, blocks].reshape(6, -1, g)[..., 0]  # the groups to compare (whole groups are clamped)
        for t in (1.0, 10.0):
            ours = torch.log_softmax(t * q[:, blocks].log().reshape(6, -1, g), -1)[rows]
            theirs = torch.log_softmax(t * logits[:, blocks].reshape(6, -1, g), -1)[rows]
            assert rows.any() and (ours - theirs).abs().max() <= 1e-8


@pytest.mark.parametrize("solver", ["peaceman_rachford(alpha=0.5, tol=1e-13, max_iter=3000)",
                                    "forward_backward(alpha=0.5, tol=1e-13, max_iter=3000)"])
def test_partly_observed_softmax_group_is_the_conditional_mean_field(solver, tmp_path_factory):
    """A group with some units observed keeps them and gives its free units the mass they leave: the fixed point of
    the conditional mean field, free units = (1 - sum observed) * softmax(logits over the free units) (they summed
    to 1.433 when the free units took the unconstrained prox). Wholly observed and wholly free groups as before."""
    layer = _layer(tmp_path_factory, PARTIAL.format(solver), "x: f32[B, 4]; mask: f32[B, 4]")
    _randomize(layer, 14, 1.0)
    x = torch.tensor([[0.1, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25],
                      [0.0, 0.3, 0.0, 0.0], [0.7, 0.0, 0.6, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.float64)
    with torch.no_grad():
        z = layer(x, mask)
    observed = mask > 0
    torch.testing.assert_close(z[:, :4][observed], x[observed], rtol=0, atol=0)
    pre = z @ layer.weight_matrix().detach().t() + layer.bias.detach()
    for row in range(len(x)):
        free = ~observed[row]
        mass = (1 - x[row][observed[row]].sum()).clamp(0, 1)
        if free.any():
            torch.testing.assert_close(z[row, :4][free], mass * torch.softmax(pre[row, :4][free], -1),
                                       rtol=0, atol=1e-10)
    torch.testing.assert_close(z[:4, :4].sum(-1), torch.ones(4, dtype=z.dtype), rtol=0, atol=1e-10)
    torch.testing.assert_close(z[4, 1:4:2], torch.zeros(2, dtype=z.dtype), rtol=0, atol=0)  # 1.3 observed: no mass
    torch.testing.assert_close(z[:, 4:], torch.softmax(pre[:, 4:], -1), rtol=0, atol=1e-10)
    # a row without a partly observed group is bit for bit what it is alone (the unchanged prox)
    with torch.no_grad():
        alone = layer(x[1:3], mask[1:3])
    torch.testing.assert_close(z[1:3], alone, rtol=0, atol=0)


@pytest.mark.parametrize("solver", ["peaceman_rachford(alpha=0.5, tol=1e-7, max_iter=500)",
                                    "forward_backward(alpha=0.5, tol=1e-7, max_iter=500)"])
def test_partly_observed_softmax_group_agrees_on_every_target(solver, tmp_path):
    """torch, Triton (its prox kernels interpreted, a partly observed group by the torch prox with its mass) and
    onnxruntime (the mass threaded through its normalizer search) give the same fixed point in float32."""
    from targets import outputs_on_every_target

    spec = tmp_path / "pg.nnspec"
    spec.write_text("model pg() {\n    input x: f32[B, 4]\n    input mask: f32[B, 4]\n"
                    f"    output y = fixed_point(x, mask, {PARTIAL.format(solver)}).part0\n}}\n")
    graph = compile_graph(spec)
    module, model = python_module(graph, "triton")
    assert module._INTERPRET, "the Triton prox kernels must run, not the torch fallback"
    _randomize(model.y, 14, 1.0)
    x = torch.tensor([[0.1, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.3, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]])
    got = outputs_on_every_target(graph, [x, mask], model.state_dict(), tmp_path)
    torch.testing.assert_close(got["torch"][0][:, :4].sum(-1), torch.ones(4), rtol=0, atol=1e-5)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=1e-5, atol=1e-5)


def test_partly_observed_softmax_group_compiles_fullgraph(tmp_path_factory):
    """Under torch.compile(fullgraph=True) every row takes the masked prox (no data-dependent row selection); a
    partly observed group comes out as in eager mode."""
    layer = _layer(tmp_path_factory, PARTIAL.format("peaceman_rachford(alpha=0.5, tol=1e-10, max_iter=500)"),
                   "x: f32[B, 4]; mask: f32[B, 4]")
    _randomize(layer, 14, 1.0)
    x = torch.tensor([[0.1, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x, mask)
        got = torch.compile(layer, fullgraph=True)(x, mask)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got[:, :4].sum(-1), torch.ones(3, dtype=got.dtype), rtol=0, atol=1e-9)
