"""`python -m benchmarks --only published` without the published ScaleGMN checkout (as in CI): one line, no figures."""
from benchmarks import published


def test_published_section_skips_with_one_line_without_a_reference(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GMNAE_SCALEGMN_REFERENCE", raising=False)
    assert published.run(quick=True) == {}
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["published: skipped: no reference checkout (pass --reference DIR or set GMNAE_SCALEGMN_REFERENCE)"]

    monkeypatch.setenv("GMNAE_SCALEGMN_REFERENCE", str(tmp_path))  # a folder that is not a checkout
    assert published.run(quick=True) == {}
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "is not a ScaleGMN checkout" in out[0] and str(tmp_path) in out[0]
