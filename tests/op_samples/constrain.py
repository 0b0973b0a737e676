"""Samples for the C-DGM constraint layer.

A sample is one `output y = ...` line after its inputs, so the `columns` statement
rides along in the input declaration (after a newline) and the block in the expression.
Inputs are standard normal: the constants are chosen so some rows are repaired and some are not.
"""

from . import Sample


def _columns(decl: str, names: str) -> str:
    return f"{decl}\n    columns ({names}) = {decl.split(':')[0]}"


def _block(call: str, *constraints: str) -> str:
    return call + " {\n" + "".join(f"        {c}\n" for c in constraints) + "    }"


SAMPLES = {
    "constrain": [
        # the README's example: an order, a box, a chain and a three-column constraint
        Sample(_block("constrain(x, order=[age, income, debt, loan])",
                      "age >= -0.5", "age <= 1", "debt <= income", "loan - 0.5 * income - debt <= 0"),
               (_columns("x: f32[B, 4]", "age, income, debt, loan"),)),
        # rank 3, default order, strict inequalities, fractions, columns on both sides
        Sample(_block("constrain(x)", "a > -1", "b < a / 3 + 0.2", "c >= (a + b) / 2", "c < 1 - b"),
               (_columns("x: f32[B, T, 3]", "a, b, c"),)),
        # a partial order (the rest follows in declaration order), an unconstrained column, a derived bound
        Sample(_block("constrain(x, order=[e, d])", "e <= 0.5", "a + e >= 0", "a - 2 * b <= 1", "d >= -e",
                      "b + c + d <= 1.5"),
               (_columns("x: f32[B, 5]", "a, b, c, d, e"),)),
    ],
}
