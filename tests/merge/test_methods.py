"""The merge-method table (gmnae/merge/methods.py): one row per name, every list of methods is its projection,
one meaning per name in `gmnae merge` and along `gmnae evaluate`'s curves, older runs' names read as today's."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

from gmnae.merge import methods as mt
from gmnae.merge.methods import BY_NAME, GROUPS, TABLE, current_columns, current_rows, names

ROOT = Path(__file__).resolve().parents[2]


def test_one_row_per_name_with_valid_fields():
    assert len({m.name for m in TABLE}) == len(TABLE) == len(BY_NAME)
    assert {m.name for m in TABLE} == {"naive", "wm", "wm-signed", "wm-scale", "mergemany", "ae", "ae-endpoints"}
    for m in TABLE:
        assert m.group in GROUPS and m.inputs in ("2", "K") and m.meaning and m.color.startswith("#")
        assert m.needs_model == (m.group == "autoencoder")
    assert mt.LEGACY_MARKER not in BY_NAME  # an old name never comes back with a new meaning


def test_every_list_of_methods_is_a_projection_of_the_table():
    from gmnae.commands import merge as cmd
    from gmnae.evaluation import merge_evaluation, report
    from gmnae.merge import kway, matching
    from gmnae.weightspace.registry import ACTIVATIONS

    assert matching.METHODS == names(curve=True, needs_model=False) == ("naive", "wm", "wm-signed", "wm-scale")
    assert matching.MATCH_METHODS == names(group="matching", inputs="2") == cmd.PAIR_METHODS
    assert kway.KWAY_METHODS == names(inputs="K") == ("naive", "mergemany", "ae", "ae-endpoints")
    assert cmd.METHOD_CHOICES == names()
    assert cmd.AE_METHODS == report.AE_METHODS == merge_evaluation.AE_METHODS == names(needs_model=True)
    assert cmd.CURVE_METHODS == matching.METHODS
    assert report.METHOD_COLORS == {m.name: m.color for m in TABLE}
    assert report.METHOD_STYLES == {m.name: dict(m.style) for m in TABLE if m.style}
    for act in ACTIVATIONS:  # the evaluation's weight-space curves: naive, wm and the activation's variant
        assert set(merge_evaluation.baseline_methods(act)) <= set(matching.METHODS)


def _constant(node) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


def _method_literals(path: Path) -> list[str]:
    """Tuple/list/set literals of two or more method names, and dicts from them to constants (colours, styles): a
    hand-written list. (A dict from names to computed values is a dispatch, not a list.)"""
    known = set(BY_NAME) | set(mt.LEGACY_NAMES)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else \
            node.keys if isinstance(node, ast.Dict) and all(_constant(v) for v in node.values) else None
        if elts and len(elts) >= 2 and all(isinstance(e, ast.Constant) and e.value in known for e in elts):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_hand_written_method_list_outside_the_table():
    found = [x for p in sorted((ROOT / "gmnae").rglob("*.py")) if p.name != "methods.py" for x in _method_literals(p)]
    assert not found, f"derive these from gmnae/merge/methods.py (names(...), TABLE): {found}"


def test_merge_help_lists_exactly_the_tables_methods(capsys):
    from gmnae.cli import build_parser

    parser = build_parser(["merge"])
    sub = next(a for a in parser._subparsers._group_actions).choices["merge"]
    method = next(a for a in sub._actions if "--method" in a.option_strings)
    assert tuple(method.choices) == names()
    help_text = " ".join(sub.format_help().split())
    for m in TABLE:
        assert f"{m.name}:" in help_text.replace("- ", "-")


class _Stub(torch.nn.Module):
    """A stand-in autoencoder (random non-linear encode/decode), enough to pin what each ae name computes."""
    def __init__(self, p: int, d: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc = torch.nn.Parameter(torch.randn(p, d, generator=g, dtype=torch.float64))
        self.dec = torch.nn.Parameter(torch.randn(d, p, generator=g, dtype=torch.float64))
        self.device = torch.device("cpu")

    def encode(self, x, codes=None):
        return torch.tanh(x @ self.enc)

    def decode(self, z):
        return torch.sin(z @ self.dec)


def test_ae_means_the_same_in_merge_and_along_the_curves():
    """`gmnae merge --method M --alpha λ` is the point λ of evaluate's M curve (merge_evaluation._ae_curves)."""
    from gmnae.evaluation.ae_merge import ae_endpoints_merge, ae_merge
    from gmnae.merge.interpolation import linear_path

    model, lam = _Stub(6, 3), 0.3
    a, b = torch.randn(2, 6, dtype=torch.float64).unbind(0)
    w = torch.tensor([1 - lam, lam], dtype=torch.float64)
    with torch.no_grad():
        za, zb = model.encode(a), model.encode(b)
    lams = torch.tensor([lam], dtype=torch.float64)
    with torch.no_grad():  # what merge_evaluation._ae_curves draws at λ
        latent_curve = model.decode(linear_path(za[None], zb[None], lams)[0, 0])  # "ae"
        endpoints_curve = linear_path(model.decode(za)[None], model.decode(zb)[None], lams)[0, 0]  # "ae-endpoints"
    nets = torch.stack([a, b])
    assert torch.allclose(ae_merge(model, nets, w, "sine").reshape(-1), latent_curve)
    assert torch.allclose(ae_endpoints_merge(model, nets, w, "sine").reshape(-1), endpoints_curve)
    assert not torch.allclose(latent_curve, endpoints_curve)


def test_older_runs_names_read_as_todays():
    old = [{"step": "10", "kind": "independent", "method": m} for m in ("naive", "wm", "ae", "ae-latent")]
    new = [{"step": "20", "kind": "independent", "method": m} for m in ("naive", "wm", "ae", "ae-endpoints")]
    got = [(r["step"], r["method"]) for r in current_rows(old + new)]  # a resumed run: both in one barriers.csv
    assert got == [("10", "naive"), ("10", "wm"), ("10", "ae-endpoints"), ("10", "ae"),
                   ("20", "naive"), ("20", "wm"), ("20", "ae"), ("20", "ae-endpoints")]
    row = {"step": "3", "interp/independent/ae/barrier": "0.1", "interp/independent/ae-latent/barrier": "0.2",
           "interp/independent/ae-endpoints/barrier": "", "recon/midpoint_ae+ft5_psnr": "30",
           "recon/midpoint_ae-latent_psnr": "31"}
    assert current_columns(row) == {"step": "3", "interp/independent/ae-endpoints/barrier": "0.1",
                                    "interp/independent/ae/barrier": "0.2",
                                    "recon/midpoint_ae-endpoints+ft5_psnr": "30", "recon/midpoint_ae_psnr": "31"}
    today = {"interp/independent/ae/barrier": "0.2", "interp/independent/ae-endpoints/barrier": "0.1",
             "interp/independent/ae-latent/barrier": ""}
    assert current_columns(today) == today
