"""The results-table script runs end to end on a small zoo."""
from experiments.merge_barriers.study import main


def test_study_writes_table(tmp_path, digits_inr_zoo, capsys):
    rc = main(["--zoo", str(digits_inr_zoo.root), "--split", "train", "--pairs", "4", "--points", "5",
               "--out", str(tmp_path)])
    assert rc == 0
    md = (tmp_path / "results.md").read_text()
    for word in ("orbit-P", "orbit-D", "orbit-PD", "independent", "naive", "wm-signed"):
        assert word in md
    assert "barrier_linear_mean" in (tmp_path / "results.csv").read_text().splitlines()[0]
    assert "±" in capsys.readouterr().out
