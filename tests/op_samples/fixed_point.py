"""Samples for the monotone fixed-point layer: each weight form, activation and solver, and clamping.

Tolerances are tight (1e-6 or better) so every target stops on the same iteration: their iterates then
differ only by float rounding, well inside the matrix's 1e-5.
"""

from . import Sample


def _fp(args: str, part: str) -> str:
    return f"fixed_point({args}).{part}"


SAMPLES = {
    "fixed_point": [
        # dense monDEQ: relu, forward-backward (alpha guarded at run time)
        Sample(_fp("x, state=[6, 4], weight=monotone(m=0.1), activation=relu(), "
                   "solver=forward_backward(alpha=0.2, tol=1e-6, max_iter=3000)", "part1")),
        # monotone DBM: softmax groups of 2 and 4, Peaceman-Rachford, rank-3 input
        Sample(_fp("x, state=[6, 4], weight=mdbm(m=0.1), activation=prox_softmax(groups=[2, 4]), "
                   "solver=peaceman_rachford(alpha=0.5, tol=1e-6, max_iter=200)", "part0"), ("x: f32[B, T, 8]",)),
        # sigmoid prox, dense monotone weight
        Sample(_fp("x, state=[5, 3], weight=monotone(m=0.2), activation=sigmoid(), "
                   "solver=peaceman_rachford(alpha=0.8, tol=1e-6, max_iter=200)", "part0")),
        # observed units: the first 4 state units are x where mask > 0; layered DBM (each part a group)
        Sample(_fp("x, mask, state=[4, 6, 3], weight=mdbm(m=0.5), activation=prox_softmax(groups=[1, 3, 3]), "
                   "solver=forward_backward(alpha=0.5, tol=1e-6, max_iter=300)", "part2"),
               ("x: f32[B, 4]", "mask: f32[B, 4]")),
        # convolutional MDBM: two tiers (4x4, 2x2), a dense part, a 1-channel input image through U_conv (FFT solve
        # in torch and triton, the kernel form of V in ONNX)
        Sample(_fp("x, state=[32, 8, 3], weight=mdbm_conv(m=0.2, image=[4, 4], channels=[2, 2]), "
                   "activation=prox_softmax(groups=[2, 2, 3]), solver=peaceman_rachford(alpha=0.7, tol=1e-6, "
                   "max_iter=300)", "part2"), ("x: f32[B, 16]",)),
    ],
}
