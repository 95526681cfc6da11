"""A training step on a shared machine: quiet, then beside one busy single-threaded process.

With torch's default thread count (one per usable CPU) its threads spin against the other process;
with the count gmnae chooses (gmnae/threads.py) they give it its CPU. Figures are step times as
ratios to the quiet step (with the default threads): `proportional.ratio` is what fair sharing
would cost (CPUs / (CPUs - 1)); the aim is `busy.chosen_over_quiet.ratio` no worse than that.
"""
from __future__ import annotations

import subprocess
import sys
import time

import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.tasks import digits
from gmnae.threads import auto_threads, usable_cpus
from ._util import timed

SPIN = "import time\nt = time.time()\nwhile time.time() - t < 600: pass\n"  # ends by itself if left behind


def _cnn_step():
    """One step of the CPU default model (scalegmn-small sizes) on the digits-cnn architecture."""
    from gmnae.training.losses import distillation_kl
    from gmnae.weightspace import Architecture

    arch = Architecture.small_cnn("relu", padding="same", image_size=(8, 8))
    model = WeightSpaceAutoencoder(arch.to_dict(), "cnn", dict(d=32, n_layers=3, latent_dim=64, dropout=0.0),
                                   {"type": "mlp", "hidden": [128, 256]}, {"lr": 1e-3},
                                   {"temperature": 4.0, "task_batch": 64}, task={"name": "digits", "split_seed": 0})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = torch.randn(64, arch.n_params) * 0.1
    x = digits.classification_images("train")[0][:64]

    def step():
        opt.zero_grad(set_to_none=True)
        distillation_kl(arch, params, model(params), x, 4.0)[0].mean().backward()
        opt.step()

    return step


def _step_ms(step, threads: int, repeat: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed(step, repeat=repeat) * 1e3
    finally:
        torch.set_num_threads(before)


def run(quick: bool = False) -> dict[str, float]:
    cpus = usable_cpus()
    if cpus < 2:
        return {"shared_cpu.skipped_one_cpu": 1}
    step, repeat = _cnn_step(), 3 if quick else 10
    quiet = _step_ms(step, cpus, repeat)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.5)  # let it run: it counts among the runnable threads now
        chosen = auto_threads()
        busy_default = _step_ms(step, cpus, repeat)
        busy_chosen = _step_ms(step, chosen, repeat)
    finally:
        spinner.kill()
        spinner.wait()
    return {"shared_cpu.usable_cpus": cpus, "shared_cpu.chosen_threads_when_busy": chosen,
            "shared_cpu.quiet.step_ms": quiet, "shared_cpu.busy.default_threads.step_ms": busy_default,
            "shared_cpu.busy.chosen_threads.step_ms": busy_chosen,
            "shared_cpu.busy.default_over_quiet.ratio": busy_default / quiet,
            "shared_cpu.busy.chosen_over_quiet.ratio": busy_chosen / quiet,
            "shared_cpu.proportional.ratio": cpus / (cpus - 1)}
