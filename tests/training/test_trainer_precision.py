"""`trainer.precision=auto` (the default): bf16-mixed where the CPU multiplies bf16 natively and the encoder is
wide enough for it to pay, 32-true elsewhere; an explicit bf16 on a CPU that emulates it gets a one-line note."""
from __future__ import annotations

import pytest

from gmnae.commands.trainer_setup import BF16_MIN_WIDTH, build_trainer, cpu_bf16_flags, resolve_precision
from gmnae.config.load import load_config

AMX_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
OLD_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2\n"


def test_bf16_flags_are_read_from_cpuinfo():
    assert cpu_bf16_flags(AMX_CPU) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(OLD_CPU) == []
    assert cpu_bf16_flags("") == []


@pytest.mark.parametrize("precision, on_gpu, width, flags, want, note", [
    ("auto", False, 256, ["amx_bf16"], "bf16-mixed", "amx_bf16"),       # the published CNN width on an AMX CPU
    ("auto", False, BF16_MIN_WIDTH, ["avx512_bf16"], "bf16-mixed", "avx512_bf16"),
    ("auto", False, 32, ["amx_bf16"], "32-true", None),                 # scalegmn-small: bf16 does not pay
    ("auto", False, 256, [], "32-true", None),                          # emulated bf16
    ("auto", True, 256, ["amx_bf16"], "32-true", None),                 # GPUs: the user's choice
    ("32-true", False, 256, ["amx_bf16"], "32-true", None),             # explicit wins
    ("bf16-mixed", False, 32, [], "bf16-mixed", "slower than 32-true"),  # kept, with a note
    ("bf16-mixed", True, 32, [], "bf16-mixed", None),
])
def test_resolve_precision(precision, on_gpu, width, flags, want, note):
    got, said = resolve_precision(precision, on_gpu, width, flags)
    assert got == want
    assert (said is None) if note is None else (note in said and "\n" not in said)


@pytest.mark.parametrize("width", [32, 256])
def test_the_trainer_gets_the_resolved_precision_on_this_machine(tmp_path, capsys, width):
    cfg = load_config(["trainer=cpu", f"model.encoder.d={width}", f"runs_dir={tmp_path}"])
    assert cfg.trainer.precision == "auto"
    trainer = build_trainer(cfg, tmp_path)
    want, note = resolve_precision("auto", False, width, cpu_bf16_flags())
    assert trainer.precision == want
    assert (note or "") in capsys.readouterr().out
