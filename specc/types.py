"""Tensor types: a dtype and a shape whose dims are integers or symbolic expressions.

A symbolic dim is a polynomial with rational coefficients over named symbols
(`B`, `T`, `4*T + 1`, `H/2`), kept in a canonical form so that two dims are
equal exactly when their polynomials are (`2*(H/2)` is `H`). That is enough to check shapes of models
whose batch and sequence sizes are only known at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Union

from . import limits
from .diagnostics import SpeccError

# dtype name in specs -> (torch name, onnx text name, bytes)
DTYPES: dict[str, tuple[str, str, int]] = {
    "f32": ("float32", "float", 4),
    "f64": ("float64", "double", 8),
    "f16": ("float16", "float16", 2),
    "bf16": ("bfloat16", "bfloat16", 2),
    "i64": ("int64", "int64", 8),
    "i32": ("int32", "int32", 4),
    "i8": ("int8", "int8", 1),
    "u8": ("uint8", "uint8", 1),
    "bool": ("bool", "bool", 1),
}
FLOAT_DTYPES = ("f32", "f64", "f16", "bf16")
MAX_INT = 2**63 - 1  # the widest int every target holds (int64): for numbers in a spec and its dims

Monomial = tuple[str, ...]  # sorted symbol names, repeated for powers


@dataclass(frozen=True)
class Sym:
    """A polynomial over symbolic dims: {monomial: coefficient}, canonical and hashable."""

    terms: tuple[tuple[Monomial, Fraction], ...]

    @staticmethod
    def of(name: str) -> "Sym":
        return Sym((((name,), Fraction(1)),))

    @staticmethod
    def _make(terms: dict[Monomial, Fraction]) -> "Dim":
        clean = {m: Fraction(c) for m, c in terms.items() if c != 0}
        limits.check("dim_terms", len(clean), None, "this dim")
        if not clean:
            return 0
        if set(clean) == {()} and clean[()].denominator == 1:
            return int(clean[()])
        return Sym(tuple(sorted(clean.items())))

    def _dict(self) -> dict[Monomial, Fraction]:
        return dict(self.terms)

    @property
    def symbols(self) -> set[str]:
        return {s for m, _ in self.terms for s in m}

    def __str__(self) -> str:
        parts = []
        for mono, coef in sorted(self.terms, key=lambda t: (-len(t[0]), t[0])):
            num, den = abs(coef.numerator), coef.denominator
            body = "*".join(mono)
            if not mono:
                text = str(num)
            elif num == 1:
                text = body
            else:
                text = f"{num}*{body}"
            if den != 1:
                text += f"/{den}"
            sign = "-" if coef < 0 else "+"
            parts.append((sign, text))
        out = ("-" if parts[0][0] == "-" else "") + parts[0][1]
        for sign, text in parts[1:]:
            out += f" {sign} {text}"
        return out


Dim = Union[int, Sym]


def _terms(d: Dim) -> dict[Monomial, Fraction]:
    return {(): Fraction(d)} if isinstance(d, int) else d._dict()


def dim_add(a: Dim, b: Dim, sign: int = 1) -> Dim:
    out = _terms(a)
    for m, c in _terms(b).items():
        out[m] = out.get(m, 0) + sign * c
    return Sym._make(out)


def dim_mul(a: Dim, b: Dim) -> Dim:
    """The product, expanded. A product of sums has as many terms as the product of their sizes
    (`(a+b+c)^10` has 66, ten distinct three-term sums 59,049), so the count is checked against
    the `dim_terms` limit while the terms are formed, not after."""
    out: dict[Monomial, Fraction] = {}
    limit = limits.value("dim_terms")
    for ma, ca in _terms(a).items():
        for mb, cb in _terms(b).items():
            m = tuple(sorted(ma + mb))
            out[m] = out.get(m, 0) + ca * cb
        if len(out) > limit:
            raise limits.exceeded("dim_terms", f"more than {limit:,}", None, "this dim")
    return Sym._make(out)


def dim_div(a: Dim, b: Dim) -> Dim | None:
    """Division by a single term (`B*784 / B`, `H / 2`); None when it cannot be a whole number
    (a constant result that is not an integer, or a divisor symbol missing from a term)."""
    divisor = _terms(b)
    if len(divisor) != 1:
        return None
    (mono, coef), = divisor.items()
    if coef == 0:
        return None
    out: dict[Monomial, Fraction] = {}
    for m, c in _terms(a).items():
        rest = list(m)
        for s in mono:
            if s not in rest:
                return None
            rest.remove(s)
        out[tuple(rest)] = c / coef
    result = Sym._make(out)
    if isinstance(result, Sym) and not result.symbols:
        return None
    return result


def check_dim(d: Dim, what: str = "this dim") -> None:
    """A dim within the `dim` limit: a concrete size, or every coefficient of a symbolic one (`B*10^12`
    is over the limit for any batch). Never over int64, which every target needs, whatever the limit."""
    sizes = [d] if isinstance(d, int) else [abs(c.numerator) for _, c in d.terms]
    for size in sizes:
        limits.check("dim", size, None, what)
        if size > MAX_INT:
            raise SpeccError("E0229", f"number out of range: dim {size:,} does not fit an int (64-bit)", None)


def dim_str(d: Dim) -> str:
    text = str(d)
    return f"({text})" if isinstance(d, Sym) and len(d.terms) > 1 else text


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    def with_shape(self, shape: tuple[Dim, ...]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def numel(self) -> Dim:
        n: Dim = 1
        for d in self.shape:
            n = dim_mul(n, d)
        return n


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def dim_value(d: Dim, sizes: Mapping[str, int], default: int) -> int:
    """The value of a dim with its symbols set from `sizes` (`default` for the others): concrete
    shapes for example inputs of a model with symbolic dims."""
    if isinstance(d, int):
        return d
    total = Fraction(0)
    for monomial, coefficient in d.terms:
        term = coefficient
        for symbol in monomial:
            term *= sizes.get(symbol, default)
        total += term
    return int(total)
