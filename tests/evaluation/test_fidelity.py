"""Fidelity measures (gmnae/evaluation/fidelity.py) against independent computations on really trained networks."""
import numpy as np
import pytest
import torch

from gmnae.evaluation.fidelity import cnn_fidelity, cnn_logits, inr_fidelity, other_indices, pearson
from gmnae.tasks.classification import task_images
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import build_module, siren_render

from ..conftest import zoo_params


def _module_logits(arch, params, images, activation):
    """One nn.Module per network (nn.Conv2d, not the batched functional forward): the reference."""
    with torch.no_grad():
        return torch.stack([build_module(arch, p, activation=a)(images) for p, a in zip(params, activation)])


@pytest.fixture(scope="module")
def cnn_case(digits_cnn_zoo):
    """6 ReLU and 6 tanh trained digits CNNs (different accuracies), 200 held-out digits, their activations."""
    arch = digits_cnn_zoo.arch
    relu = zoo_params(digits_cnn_zoo, "train", "relu", limit=6, dtype=torch.float64)
    tanh = zoo_params(digits_cnn_zoo, "train", "tanh", limit=6, dtype=torch.float64)
    x, y = task_images(digits_cnn_zoo.task, "test")
    acts = ["relu"] * len(relu) + ["tanh"] * len(tanh)
    return arch.with_activation("mixed"), torch.cat([relu, tanh]), x[:200].double(), y[:200], acts


def test_other_indices_skip_the_own_group():
    assert other_indices(torch.arange(4)).tolist() == [1, 2, 3, 0]
    assert other_indices(torch.tensor([0, 0, 1, 1])).tolist() == [2, 2, 0, 0]
    assert other_indices(torch.tensor([0, 1, 2, 0, 1, 2])).tolist() == [1, 2, 3, 4, 5, 0]
    with pytest.raises(ValueError, match="two groups"):
        other_indices(torch.zeros(3))


def test_cnn_logits_chunked_equal_the_modules(cnn_case):
    arch, nets, x, _, acts = cnn_case
    per_net = x.shape[0] * x[0].numel() * 16
    torch.testing.assert_close(cnn_logits(arch, nets, x, acts, budget=3 * per_net),  # 3 networks per chunk
                               _module_logits(arch, nets, x, acts), rtol=0, atol=1e-9)


def test_a_network_agrees_with_itself(cnn_case):
    arch, nets, x, y, acts = cnn_case
    f = cnn_fidelity(arch, nets, nets.clone(), x, y, acts)
    assert f["agreement_own"] == 1.0 and f["kl_own"] == pytest.approx(0.0, abs=1e-12)
    assert f["accuracy_teacher"] == f["accuracy_decoded"] and f["accuracy_corr"] == pytest.approx(1.0)
    assert f["agreement_other"] < 1.0 and f["kl_other"] > 0.01  # trained networks do differ


def test_cnn_fidelity_equals_a_hand_computation(cnn_case):
    """Teachers: 3 ReLU and 3 tanh networks; "decoded": 6 other real networks of the same activations."""
    arch, nets, x, y, acts = cnn_case
    t, s = nets[[0, 1, 2, 6, 7, 8]], nets[[3, 4, 5, 9, 10, 11]]
    act = ["relu"] * 3 + ["tanh"] * 3
    other = [3, 2, 5, 0, 1, 4]
    got = cnn_fidelity(arch, t, s, x, y, act, torch.tensor(other))
    tl, sl = _module_logits(arch, t, x, act).numpy(), _module_logits(arch, s, x, act).numpy()

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def kl(p_logits, q_logits):
        p, q = softmax(p_logits), softmax(q_logits)
        return float(np.mean([np.mean(np.sum(p[i] * np.log(p[i] / q[i]), -1)) for i in range(len(p))]))

    tp, sp = tl.argmax(-1), sl.argmax(-1)
    acc_t, acc_s = (tp == y.numpy()).mean(1), (sp == y.numpy()).mean(1)
    expected = {"agreement_own": (sp == tp).mean(), "agreement_other": (sp == tp[other]).mean(),
                "kl_own": kl(tl, sl), "kl_other": kl(tl[other], sl), "accuracy_teacher": acc_t.mean(),
                "accuracy_decoded": acc_s.mean(), "accuracy_corr": np.corrcoef(acc_s, acc_t)[0, 1]}
    for k, v in expected.items():
        assert got[k] == pytest.approx(float(v), abs=1e-9), k
    assert 0 < got["agreement_own"] < 1 and got["kl_own"] > 0


def test_pearson_equals_numpy():
    a, b = torch.rand(20, dtype=torch.float64), torch.rand(20, dtype=torch.float64)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.numpy(), b.numpy())[0, 1], abs=1e-12)
    assert np.isnan(pearson(torch.ones(5), a[:5]))


def test_inr_psnr_own_vs_other(digits_inr_zoo):
    """Each SIREN against its own rendering (exact: the 120 dB floor) and against another image's."""
    params = zoo_params(digits_inr_zoo, "test", dtype=torch.float64)[:8]
    images = torch.as_tensor(digits_inr_zoo.read_meta("test")["image_index"][:8])
    img = siren_render(digits_inr_zoo.arch, params, coordinate_grid(28, dtype=torch.float64))[..., 0]
    other = other_indices(images)
    assert (images[other] != images).all()
    f = inr_fidelity(img, img, other)
    assert f["psnr_own"] == pytest.approx(120.0)
    r = img.numpy()
    hand = np.mean([10 * np.log10(1 / np.mean((r[i] - r[j]) ** 2)) for i, j in enumerate(other.tolist())])
    assert f["psnr_other"] == pytest.approx(hand, abs=1e-9)
    # a rendering perturbed by known noise: PSNR own = 10 log10(1 / σ²) up to the draw
    noisy = img + 0.01 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0), dtype=img.dtype)
    assert inr_fidelity(img, noisy, other)["psnr_own"] == pytest.approx(40.0, abs=0.2)


def test_kendall_tau_equals_scipy():
    from scipy.stats import kendalltau

    from gmnae.evaluation.fidelity import kendall_tau

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (40,), generator=g).double()  # ties on purpose
    b = a + torch.randint(0, 4, (40,), generator=g).double()
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert kendall_tau(a, -a) == pytest.approx(-1.0) and np.isnan(kendall_tau(torch.ones(5), a[:5]))


def test_similar_indices_pick_the_nearest_other():
    from gmnae.evaluation.fidelity import similar_indices

    assert similar_indices(torch.tensor([0.50, 0.10, 0.52, 0.13])).tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="two networks"):
        similar_indices(torch.tensor([0.5]))


def test_cnn_fidelity_similar_accuracy_and_tau_by_hand(cnn_case):
    """The similar-accuracy teacher, Kendall τ and mean |Δacc|, recomputed from the modules' predictions."""
    from scipy.stats import kendalltau

    arch, nets, x, y, _ = cnn_case
    t, s = nets[[0, 1, 2, 6, 7, 8]], nets[[3, 4, 5, 9, 10, 11]]
    act = ["relu"] * 3 + ["tanh"] * 3
    got = cnn_fidelity(arch, t, s, x, y, act)
    tp, sp = _module_logits(arch, t, x, act).numpy().argmax(-1), _module_logits(arch, s, x, act).numpy().argmax(-1)
    acc_t, acc_s = (tp == y.numpy()).mean(1), (sp == y.numpy()).mean(1)
    sim = [min((j for j in range(6) if j != i), key=lambda j: (abs(acc_t[j] - acc_t[i]), j)) for i in range(6)]
    assert got["agreement_similar"] == pytest.approx(float((sp == tp[sim]).mean()), abs=1e-12)
    assert got["accuracy_abs_delta"] == pytest.approx(float(np.abs(acc_s - acc_t).mean()), abs=1e-12)
    assert got["accuracy_tau"] == pytest.approx(kendalltau(acc_s, acc_t).statistic, abs=1e-12)
    within = np.mean([abs(acc_t[sim[i]] - acc_t[i]) <= 0.02 + 1e-12 for i in range(6)])
    assert got["similar_within"] == pytest.approx(within)
    own = cnn_fidelity(arch, t, t.clone(), x, y, act)  # a perfect decoder: τ 1, no accuracy error
    assert own["accuracy_tau"] == pytest.approx(1.0) and own["accuracy_abs_delta"] == 0.0
    assert own["agreement_similar"] < 1.0


def test_zoo_split_fidelity_covers_the_split_per_activation_and_all(digits_cnn_zoo):
    """An (untrained) autoencoder on every network of a split (train: the tiny zoo's test split has 4): per-activation tables, and the mixed 'all' table whose
    agreement is the network-weighted mean of the two; the autoencoder row is cnn_fidelity of its decodings."""
    from gmnae.training.autoencoder import WeightSpaceAutoencoder
    from gmnae.evaluation.fidelity import zoo_split_fidelity
    from gmnae.weightspace.registry import codes_of

    torch.manual_seed(0)
    model = WeightSpaceAutoencoder(digits_cnn_zoo.arch.to_dict(), "cnn", {"d": 8, "n_layers": 1, "latent_dim": 8},
                                   {"type": "mlp", "hidden": [8, 8]}, {}).eval()
    got = zoo_split_fidelity(model, digits_cnn_zoo, "train")
    acts = digits_cnn_zoo.activations("train")
    n = {a: acts.count(a) for a in ("relu", "tanh")}
    assert min(n.values()) >= 2, (n, sorted(got))
    assert got["split relu:fidelity_networks"] == n["relu"] and got["split all:fidelity_networks"] == len(acts)
    weighted = sum(n[a] * got[f"split {a}:fidelity_agreement_own"] for a in n) / len(acts)
    assert got["split all:fidelity_agreement_own"] == pytest.approx(weighted, abs=1e-12)
    params = torch.from_numpy(digits_cnn_zoo.read_params("train"))
    relu = torch.tensor([a == "relu" for a in acts])
    with torch.no_grad():
        decoded = model(params[relu], codes_of(["relu"] * n["relu"]))
    x, y = task_images(digits_cnn_zoo.task, "test")
    hand = cnn_fidelity(digits_cnn_zoo.arch, params[relu], decoded, x, y, "relu")
    for k, v in hand.items():
        assert got[f"split relu:fidelity_{k}"] == pytest.approx(v, abs=1e-6, nan_ok=True), k
    assert "split relu:fidelity_blind_agreement_own" in got and "split relu:fidelity_blind_accuracy_tau" not in got
