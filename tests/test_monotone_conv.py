"""The convolutional multi-tier monotone DBM (`weight=mdbm_conv(...)`), checked on the generated torch layer at
tiny sizes in float64, against references built without its FFT machinery:

- W equals -D (G - blockdiag(G)) D with G = A^T A for A assembled densely from circular convolutions written
  here by index arithmetic; it is symmetric, hollow on the groups, and I - W >= m I for any parameters;
- the FFT/Schur solve equals a dense solve of I + alpha (I - W);
- the fixed point satisfies the mean-field equations z = prox(W z + U x + b) (clamped units held);
- implicit gradients match finite differences (gradcheck) for every parameter and the input;
- forward-backward (W by the FFT, its step from bounds on the spectrum of I - W) reaches the same fixed point
  with the same implicit gradient, warns or raises when it does not converge, and runs alike on torch, Triton
  and onnxruntime;
- bad arguments are located errors (E0857-E0861).
Targets agreeing for Peaceman-Rachford is tests/test_parity.py's job (specs/mdbm_conv_mnist.nnspec).
"""

from __future__ import annotations

import pytest
import torch

from specc.diagnostics import SpeccError
from targets import compile_graph, outputs_on_every_target, python_module
from test_monotone import _layer, _randomize

CLAMPED = ("state=[32, 16, 3], weight=mdbm_conv(m=0.1, image=[4, 4], channels=[2, 4]), "
           "activation=prox_softmax(groups=[2, 2, 3]), solver=peaceman_rachford(alpha=0.5, tol=1e-12, max_iter=3000)",
           "x: f32[B, 32]; mask: f32[B, 32]")
# three tiers (8x8, 4x4, 2x2: the strided links and the polyphase layout), a 1-channel input image, a dense part
THREE = ("state=[128, 32, 16, 5], weight=mdbm_conv(m=0.2, image=[8, 8], channels=[2, 2, 4]), "
         "activation=prox_softmax(groups=[2, 2, 4, 5]), solver=peaceman_rachford(alpha=0.7, tol=1e-12, max_iter=3000)",
         "x: f32[B, 64]")
SIGMOID = ("state=[16, 8], weight=mdbm_conv(m=0.3, image=[4, 4], channels=[1, 2], kernel=3), activation=sigmoid(), "
           "solver=peaceman_rachford(alpha=0.8, tol=1e-12, max_iter=3000)", "x: f32[B, 32]")
CASES = {"clamped": CLAMPED, "three": THREE, "sigmoid": SIGMOID}


pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices (conftest.py)


def _forward_backward(args: str) -> str:
    """The case's spec with forward-backward at the same alpha, tol and max_iter."""
    assert "solver=peaceman_rachford(" in args
    return args.replace("solver=peaceman_rachford(", "solver=forward_backward(")


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return request.param


@pytest.fixture(scope="module")
def layer(case, tmp_path_factory):
    args, inputs = CASES[case]
    return _layer(tmp_path_factory, args, inputs)


@pytest.fixture(scope="module")
def fb_layer(case, tmp_path_factory):
    args, inputs = CASES[case]
    return _layer(tmp_path_factory, _forward_backward(args), inputs)


# ---------------------------------------------------------------- an independent dense reference
def _circular(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """y[o, i, j] = sum K[o, c, a, b] x[c, (s i + a - p) mod h, (s j + b - p) mod w], by index arithmetic."""
    _, h, w = x.shape
    k = kernel.shape[-1]
    p = (k - 1) // 2
    rows = torch.arange(0, h, stride)
    cols = torch.arange(0, w, stride)
    out = 0
    for a in range(k):
        for b in range(k):
            patch = x[:, (rows + a - p) % h][:, :, (cols + b - p) % w]
            out = out + torch.einsum("oc,cij->oij", kernel[:, :, a, b], patch)
    return out


def _dense_a(layer) -> torch.Tensor:
    """A as a matrix: the state (channels-last tiers, then the dense part) to the output slots (one per tier)."""
    columns = []
    for unit in range(layer.n):
        e = torch.zeros(layer.n, dtype=torch.float64)
        e[unit] = 1
        images, start = [], 0
        for c, h, w in layer.tiers:
            images.append(e[start:start + c * h * w].reshape(h, w, c).permute(2, 0, 1))
            start += c * h * w
        slots = []
        for t, image in enumerate(images):
            y = _circular(image, getattr(layer, f"A{t}").detach(), 1)
            if t:
                y = y + _circular(images[t - 1], getattr(layer, f"A{t - 1}_{t}").detach(), 2)
            slots.append(y)
        if layer.dense:
            slots = [y + torch.einsum("clhw,l->chw", getattr(layer, f"A_dense{t}").detach(), e[start:])
                     for t, y in enumerate(slots)]
        columns.append(torch.cat([s.permute(1, 2, 0).reshape(-1) for s in slots]))
    return torch.stack(columns, 1)


def _reference_w(layer) -> torch.Tensor:
    """-D (G - blockdiag(G)) D, G = A^T A, blocks the groups (consecutive units), D scaling each block to 1 - m."""
    a = _dense_a(layer)
    gram = a.t() @ a
    group = torch.cat([torch.arange(size // g).repeat_interleave(g) + start for start, size, g in layer.weight_blocks])
    same = group[:, None] == group[None, :]
    d = torch.ones(layer.n, dtype=torch.float64)
    for b in group.unique():
        units = (group == b).nonzero().flatten()
        top = torch.linalg.eigvalsh(gram[units][:, units])[-1]
        d[units] = ((1 - layer.m) / top).clamp(max=1).sqrt()
    return -(d[:, None] * d[None, :]) * gram * ~same


def _injection(layer, x: torch.Tensor) -> torch.Tensor:
    """U x + b: the input image through the first tier's circular convolution (or b alone with a mask)."""
    if layer.clamp:
        return layer.bias.detach().expand(len(x), -1)
    _, h, w = layer.tiers[0]
    rows = []
    for row in x:
        y = _circular(row.reshape(h, w, -1).permute(2, 0, 1), layer.U_conv.detach(), 1)
        rows.append(torch.cat([y.permute(1, 2, 0).reshape(-1), torch.zeros(layer.n - y.numel(), dtype=x.dtype)]))
    return torch.stack(rows) + layer.bias.detach()


def _inputs(layer, seed: int, rows: int = 3):
    gen = torch.Generator().manual_seed(seed)
    if not layer.clamp:
        return torch.randn(rows, layer.n_in, generator=gen, dtype=torch.float64), None
    bits = torch.randint(0, 2, (rows, layer.n_in // 2), generator=gen)
    x = torch.nn.functional.one_hot(bits, 2).reshape(rows, -1).double()
    observed = (torch.rand(rows, layer.n_in // 2, generator=gen) < 0.5).repeat_interleave(2, 1)  # whole pixels
    return x, observed.double()


# ---------------------------------------------------------------- tests
def test_weight_matches_the_dense_construction(layer):
    _randomize(layer, 1, 0.7)
    with torch.no_grad():
        W = layer.weight_matrix()
    torch.testing.assert_close(W, _reference_w(layer), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, scale", [(2, 0.01), (3, 1.0), (4, 30.0), (5, 1000.0)])
def test_monotone_symmetric_and_hollow_for_any_parameters(layer, seed, scale):
    _randomize(layer, seed, scale)
    with torch.no_grad():
        W = layer.weight_matrix()
    assert torch.equal(W, W.t()) or (W - W.t()).abs().max() <= 1e-12 * (1 + W.abs().max())
    least = torch.linalg.eigvalsh(torch.eye(layer.n, dtype=W.dtype) - W).min()
    assert least >= layer.m - 1e-9 * (1 + W.abs().max())
    for start, size, g in layer.weight_blocks:
        for u in range(start, start + size, g):
            assert W[u:u + g, u:u + g].abs().max() <= 1e-12 * (1 + W.abs().max())


def test_fft_solve_equals_a_dense_solve(layer):
    _randomize(layer, 6, 1.0)
    eye = torch.eye(layer.n, dtype=torch.float64)
    with torch.no_grad():
        ops = layer.operators()
        V = ops.solve(eye).t()
        W = _reference_w(layer)
    expected = torch.linalg.solve(eye + ops.alpha * (eye - W), eye)
    torch.testing.assert_close(V, expected, rtol=0, atol=1e-11)
    r = torch.randn(4, layer.n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(ops.times_w(r), r @ W.t(), rtol=0, atol=1e-11)


def _prox_equation(layer, pre: torch.Tensor) -> torch.Tensor:
    """The activation itself (the fixed point of the proximal splitting is sigma(W z + U x + b))."""
    if layer.activation == "sigmoid":
        return torch.sigmoid(pre)
    return torch.cat([torch.softmax(pre[:, s:s + n].reshape(len(pre), -1, g), -1).reshape(len(pre), n)
                      for s, n, g in layer.softmax_blocks], 1)


def _clamped(layer, x: torch.Tensor, mask: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
    """z with the observed units (mask > 0 among the leading x.shape[-1]) held at x."""
    if mask is None:
        return z
    held = torch.nn.functional.pad(mask > 0, (0, layer.n - layer.n_in))
    return torch.where(held, torch.nn.functional.pad(x, (0, layer.n - layer.n_in)), z)


def _mean_field_error(layer, x: torch.Tensor, mask: torch.Tensor | None, z: torch.Tensor) -> float:
    """How far z is from solving z = sigma(W z + U x + b) (observed units held), W the dense construction's."""
    expected = _prox_equation(layer, z @ _reference_w(layer).t() + _injection(layer, x))
    return (z - _clamped(layer, x, mask, expected)).abs().max().item()


def test_fixed_point_solves_the_mean_field_equations(layer):
    _randomize(layer, 8, 0.5)
    x, mask = _inputs(layer, 9)
    with torch.no_grad():
        z = layer(x, mask)
    assert _mean_field_error(layer, x, mask, z) <= 1e-10


def _gradcheck(layer, x: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """gradcheck of a weighted sum of the fixed point against every parameter and x (when it requires grad)."""
    names = [name for name, _ in layer.named_parameters()]
    weights = torch.linspace(-1, 1, layer.n, dtype=torch.float64)

    def run(x, *params):
        out = torch.func.functional_call(layer, dict(zip(names, params)), (x, mask))
        return (out * weights).sum(-1)

    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    return torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_implicit_gradient_matches_finite_differences(layer):
    _randomize(layer, 10, 0.3)
    x, mask = _inputs(layer, 11, rows=2)
    assert _gradcheck(layer, x.clone().requires_grad_(not layer.clamp), mask)


# ---------------------------------------------------------------- forward-backward
def test_forward_backward_step_is_the_dense_one(fb_layer):
    """One step of the layer's solver map is clamp(prox((1 - alpha) s + alpha (W s + U x + b))) for the dense
    construction's W: the solve is forward-backward, with W applied by the FFT (and no V built)."""
    _randomize(fb_layer, 14, 0.5)
    x, mask = _inputs(fb_layer, 15)
    s = torch.rand(len(x), fb_layer.n, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    with torch.no_grad():
        ops = fb_layer.operators()
        clamp, observed = fb_layer._clamped(x, mask)
        step = fb_layer._map(fb_layer.prox, s, s, fb_layer._injection(x), ops, ops.alpha, ops, clamp, observed)
        pre = (1 - ops.alpha) * s + ops.alpha * (s @ _reference_w(fb_layer).t() + _injection(fb_layer, x))
        expected = _clamped(fb_layer, x, mask, fb_layer.prox(pre, ops.alpha))
    assert ops.v_cc is None
    torch.testing.assert_close(step, expected, rtol=0, atol=1e-12)


def test_forward_backward_reaches_the_fixed_point(layer, fb_layer):
    """The same weights: forward-backward's fixed point is Peaceman-Rachford's and solves the mean-field equations
    with the dense construction's W (the fixed point does not depend on the solver or its step)."""
    _randomize(layer, 8, 0.5)
    fb_layer.load_state_dict(layer.state_dict())
    x, mask = _inputs(layer, 9)
    with torch.no_grad():
        z_pr, z_fb = layer(x, mask), fb_layer(x, mask)
    assert (z_fb - z_pr).abs().max() <= 1e-10
    assert _mean_field_error(fb_layer, x, mask, z_fb) <= 1e-10


@pytest.mark.parametrize("seed, scale, alpha, kept", [(17, 0.01, None, True), (18, 3.0, 1.0, False)])
def test_forward_backward_step_from_bounds_on_the_spectrum(fb_layer, seed, scale, alpha, kept):
    """The step's interval [lo, hi] contains eig(I - W) of the dense construction, and is its exact range without a
    dense part; the spec's alpha is kept when max |1 - alpha lambda| < 1 over the interval (small weights, the
    case's alpha), else 2 / (lo + hi) is used (alpha 1 against hi > 2); either way it contracts on the true
    spectrum."""
    _randomize(fb_layer, seed, scale)
    before = fb_layer.alpha
    spec = fb_layer.alpha = alpha or before
    try:
        with torch.no_grad():
            ops = fb_layer.operators()
            lo, hi = fb_layer._spectrum_bounds(ops.w_cc, ops.w_cl, ops.w_ll)
            lam = torch.linalg.eigvalsh(torch.eye(fb_layer.n, dtype=torch.float64) - _reference_w(fb_layer))
    finally:
        fb_layer.alpha = before
    assert fb_layer.m <= lo <= lam[0] + 1e-10 and hi >= lam[-1] - 1e-10
    if not fb_layer.dense:
        torch.testing.assert_close(torch.stack([lo, hi]), lam[[0, -1]], rtol=0, atol=1e-10)
    assert (max(abs(1 - spec * lo), abs(1 - spec * hi)) < 1) == kept
    assert ops.alpha.item() == pytest.approx(spec if kept else min(2 / (lo + hi).item(), 1.0), rel=1e-14)
    assert (1 - ops.alpha * lam).abs().max() < 1


def _gradients(layer, x: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = layer(x, mask)
    loss = (out * torch.linspace(-1, 1, layer.n, dtype=torch.float64)).sum()
    return list(torch.autograd.grad(loss, [x, *layer.parameters()]))


def test_forward_backward_implicit_gradient(layer, fb_layer):
    """Forward-backward's implicit gradient (the adjoint fixed point of its own map) matches finite differences for
    every parameter and the input, the clamped values included (clamped: observed pixels), and equals
    Peaceman-Rachford's (the same fixed point, so the same derivative)."""
    _randomize(layer, 10, 0.3)
    fb_layer.load_state_dict(layer.state_dict())
    x, mask = _inputs(layer, 11, rows=2)
    assert _gradcheck(fb_layer, x.clone().requires_grad_(), mask)
    for got, expected in zip(_gradients(fb_layer, x, mask), _gradients(layer, x, mask), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_unconverged_forward_backward_warns_or_raises(tmp_path_factory):
    """max_iter too small: a RuntimeWarning naming the residual, or an error with strict=true; converged solves stay
    quiet forward and backward, and an adjoint solve cut short warns as well."""
    import warnings

    args, inputs = CASES["sigmoid"]
    short = _forward_backward(args).replace("max_iter=3000", "max_iter=3")
    layer = _layer(tmp_path_factory, short, inputs)
    _randomize(layer, 19, 1.0)
    x, _ = _inputs(layer, 20)
    with pytest.warns(RuntimeWarning, match="forward_backward forward solve did not converge in 3 iterations: "
                                            "relative residual"):
        with torch.no_grad():
            layer(x)
    strict = _layer(tmp_path_factory, short.replace("max_iter=3)", "max_iter=3, strict=true)"), inputs)
    strict.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="did not converge in 3 iterations"):
        with torch.no_grad():
            strict(x)
    layer.max_iter = 3000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x).sum().backward()
    z = layer(x)
    layer.max_iter = 2
    with pytest.warns(RuntimeWarning, match=r"backward \(adjoint\) solve did not converge in 2 iterations"):
        z.sum().backward()


# the parity cases: a mask and a dense label part (softmax, two tiers), a dense part without a mask, neither (sigmoid:
# the interpreted softmax kernel is slow, and THREE's layout is checked on torch above)
LABEL = (SIGMOID[0].replace("state=[16, 8]", "state=[16, 8, 3]"), SIGMOID[1])
PARITY = {"clamped": CLAMPED, "label": LABEL, "sigmoid": SIGMOID}


@pytest.mark.parametrize("which", list(PARITY))
def test_forward_backward_agrees_on_every_target(which, tmp_path):
    """torch, Triton (its prox kernels, interpreted) and onnxruntime run the same forward-backward solve in float32.
    The ONNX Loop applies W's exported kernel (and the dense part's coupling and block), not V's."""
    import onnx

    from specc.codegen import backends

    args, inputs = PARITY[which]
    args = _forward_backward(args).replace("tol=1e-12, max_iter=3000", "tol=1e-6, max_iter=500")
    spec = tmp_path / "fb.nnspec"
    names = ", ".join(decl.split(":")[0] for decl in inputs.split(";"))
    decls = "\n".join(f"    input {decl.strip()}" for decl in inputs.split(";"))
    spec.write_text(f"model fb() {{\n{decls}\n    output y = fixed_point({names}, {args}).part0\n}}\n")
    graph = compile_graph(spec)
    module, model = python_module(graph, "triton")
    assert module._INTERPRET, "the Triton prox kernels must run, not the torch fallback"
    _randomize(model.y, 21, 0.5)
    x, mask = _inputs(model.y, 22)
    feeds = [x.float()] + ([] if mask is None else [mask.float()])
    got = outputs_on_every_target(graph, feeds, model.state_dict(), tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=1e-5, atol=1e-5)
    exported = {i.name.split("__")[-1] for i in onnx.load_from_string(
        backends()["onnx"].emit(graph, weights=tmp_path / "w.pt").data).graph.initializer}
    assert "Wk" in exported and "Vk" not in exported
    assert ({"Wcl", "Wll"} <= exported) == (which != "sigmoid")


@pytest.mark.parametrize("args, inputs, code", [
    ("state=[32, 10], weight=mdbm_conv(image=[4, 4], channels=[2, 2])", "x: f32[B, 32]", "E0857"),
    ("state=[32], weight=mdbm_conv(image=[4, 4])", "x: f32[B, 32]", "E0857"),
    ("state=[32], weight=mdbm_conv(image=[6, 6], channels=[2, 2, 2])", "x: f32[B, 32]", "E0857"),
    ("state=[32], weight=mdbm_conv(image=[4, 4], channels=[2], kernel=2)", "x: f32[B, 32]", "E0858"),
    ("state=[32], weight=mdbm_conv(image=[4, 4], channels=[2], kernel=11)", "x: f32[B, 32]", "E0858"),
    ("state=[48], weight=mdbm_conv(image=[4, 4], channels=[3]), activation=prox_softmax(groups=2)",
     "x: f32[B, 48]", "E0860"),
    ("state=[32], weight=mdbm_conv(image=[4, 4], channels=[2])", "x: f32[B, 20]", "E0861"),
])
def test_bad_arguments_are_located_errors(args, inputs, code, tmp_path):
    spec = tmp_path / "bad.nnspec"
    spec.write_text(f"model bad() {{\n    input {inputs}\n    output y = fixed_point(x, {args}).part0\n}}\n")
    with pytest.raises(SpeccError) as err:
        compile_graph(spec)
    assert err.value.code == code, err.value
    assert err.value.span is not None and err.value.span.line == 3


def test_onnx_refuses_a_kernel_too_large_for_one_file_at_the_layer(tmp_path):
    """The ONNX target exports V's kernel (N^2 h w elements): past 2 GiB it is a located error before any
    weights are built (the torch target is unaffected)."""
    from specc.codegen import backends

    spec = tmp_path / "big.nnspec"
    spec.write_text("model big() {\n    input x: f32[B, 65536]\n"
                    "    output y = fixed_point(x, state=[65536, 65536, 65536], weight=mdbm_conv(image=[32, 32], "
                    "channels=[64, 256, 1024])).part0\n}\n")  # V's kernel: 3072^2 x 8 x 8 floats, 2.4 GB
    graph = compile_graph(spec)
    with pytest.raises(SpeccError) as err:
        backends()["onnx"].emit(graph)
    assert err.value.code == "E0611" and err.value.span is not None and err.value.span.line == 3


def _partly_observed(layer, seed: int, rows: int = 2):
    """Inputs whose mask observes one unit (of two) of some pixels, at values in [0, 0.6), and whole other pixels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, layer.n_in, generator=gen, dtype=torch.float64) * 0.6
    pick = torch.randint(0, 3, (rows, layer.n_in // 2), generator=gen)  # 0: hidden, 1: one unit, 2: the pixel
    mask = torch.stack([pick > 0, pick == 2], -1).reshape(rows, -1)
    x = torch.where(pick[..., None] == 2, torch.tensor([0.3, 0.7], dtype=torch.float64), x.reshape(rows, -1, 2))
    return x.reshape(rows, -1), mask.double()


@pytest.mark.parametrize("solver", ["pr", "fb"])
def test_partly_observed_pixels_take_the_mass_left(solver, tmp_path_factory):
    """A pixel (softmax group of two channel units) with one unit observed: its other unit takes the mass left,
    1 - the observed value (the conditional mean field; it was the unconstrained prox before), every other unit
    solves the mean-field equations, and the implicit gradient (through that mass too) matches finite differences."""
    args, inputs = CLAMPED
    layer = _layer(tmp_path_factory, args if solver == "pr" else _forward_backward(args), inputs)
    _randomize(layer, 8, 0.5)
    x, mask = _partly_observed(layer, 9)
    with torch.no_grad():
        z = layer(x, mask)
    observed = mask > 0
    torch.testing.assert_close(z[:, :32][observed], x[observed], rtol=0, atol=0)
    torch.testing.assert_close(z[:, :32].reshape(2, -1, 2).sum(-1), torch.ones(2, 16, dtype=z.dtype), rtol=0,
                               atol=1e-12)
    expected = _prox_equation(layer, z @ _reference_w(layer).t() + _injection(layer, x))
    torch.testing.assert_close(z[:, 32:], expected[:, 32:], rtol=0, atol=1e-10)
    assert bool(((mask.reshape(2, -1, 2).sum(-1) == 1)).any())
    assert _gradcheck(layer, x[:1].clone().requires_grad_(), mask[:1])


def test_partly_observed_pixels_agree_on_every_target(tmp_path):
    """torch, Triton (interpreted) and onnxruntime give the same forward-backward fixed point with partly observed
    pixels, in float32."""
    args, inputs = CLAMPED
    args = _forward_backward(args).replace("tol=1e-12, max_iter=3000", "tol=1e-6, max_iter=500")
    spec = tmp_path / "fb.nnspec"
    spec.write_text(f"model fb() {{\n    input x: f32[B, 32]\n    input mask: f32[B, 32]\n"
                    f"    output y = fixed_point(x, mask, {args}).part0\n}}\n")
    graph = compile_graph(spec)
    module, model = python_module(graph, "triton")
    assert module._INTERPRET, "the Triton prox kernels must run, not the torch fallback"
    _randomize(model.y, 21, 0.5)
    x, mask = _partly_observed(model.y, 22)
    got = outputs_on_every_target(graph, [x.float(), mask.float()], model.state_dict(), tmp_path)
    torch.testing.assert_close(got["torch"][0][:, :32].reshape(2, -1, 2).sum(-1), torch.ones(2, 16), rtol=0,
                               atol=1e-6)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=1e-5, atol=1e-5)
