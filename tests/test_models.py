import json

import numpy as np
import pytest
import torch

from lib.data import photo_crops
from lib.quality import eps_mse_by_band
import lib.models
from lib.models import GaussianModel, available_models, load_model


def test_gaussian_eps_closed_form():
    rng = np.random.default_rng(0)
    D = 12
    A = rng.standard_normal((D, D))
    cov, mu = A @ A.T / D + 0.1 * np.eye(D), rng.standard_normal(D)
    m = GaussianModel(mu, cov, (3, 2, 2))
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    t = torch.tensor([5, 100, 600, 980])
    abar = m.alphas_cumprod[t].numpy()
    for i in range(4):
        a, s = np.sqrt(abar[i]), np.sqrt(1 - abar[i])
        expected = s * np.linalg.solve(a**2 * cov + s**2 * np.eye(D), x[i].reshape(-1).numpy() - a * mu)
        assert np.allclose(m.eps(x, t)[i].reshape(-1).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_gaussian_eps_is_the_posterior_mean_of_the_noise():
    """Monte Carlo: E[eps | x_t] over data ~ N(mu, Sigma) equals the model's prediction."""
    rng = np.random.default_rng(1)
    D = 3
    cov, mu = np.diag([1.0, 0.3, 0.05]), np.array([0.2, -0.1, 0.0])
    m = GaussianModel(mu, cov, (3, 1, 1))
    t = 400
    abar = float(m.alphas_cumprod[t])
    a, s = np.sqrt(abar), np.sqrt(1 - abar)
    x0 = rng.multivariate_normal(mu, cov, 400_000)
    eps = rng.standard_normal((400_000, D))
    xt = a * x0 + s * eps
    # regress eps on x_t: the best linear (here: exact) predictor
    X = np.c_[xt, np.ones(len(xt))]
    coef, *_ = np.linalg.lstsq(X, eps, rcond=None)
    probe = torch.tensor([[0.5, -0.2, 0.1]], dtype=torch.float64).reshape(1, 3, 1, 1)
    mc = np.r_[probe.reshape(-1).numpy(), 1.0] @ coef
    assert np.allclose(m.eps(probe, t).reshape(-1).numpy(), mc, atol=0.01)


def test_registry():
    assert "gaussian" in available_models()
    with pytest.raises(KeyError, match="available"):
        load_model("sd-7")
    with pytest.raises(ValueError, match="mean must have"):
        GaussianModel(np.zeros(5), np.eye(5), (3, 2, 2))


def test_every_registered_model_has_weights_where_its_spec_says():
    from lib.models import MODELS, model_dir

    assert available_models() == list(MODELS) and len(MODELS) >= 7
    for name, spec in MODELS.items():
        assert spec.name == name
        if spec.backend == "embedded":  # committed weights with their card
            assert (model_dir(spec.source) / "card.json").exists(), name
            assert load_model(name).sample_shape == (3, spec.resolution, spec.resolution)
        elif spec.backend == "stable-diffusion":  # a Hub id, latent space, a grid of its own
            assert spec.source.count("/") == 1 and spec.latent_factor == 8, name
            assert (spec.spacing == "trailing") == name.endswith("turbo"), name
        else:
            assert spec.backend == "gaussian" and spec.in_pixels
    with pytest.raises(ValueError, match="repo= applies"):
        load_model("gaussian", repo="some/model")


def test_registering_a_model_makes_it_loadable_and_refuses_clashes(monkeypatch, tmp_path):
    from lib.models import MODELS, ModelSpec, register

    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path))

    monkeypatch.setattr(lib.models, "MODELS", dict(MODELS))  # the registry as it was, after
    made = []

    def load(spec, device, dtype):
        made.append((spec.name, device, dtype))
        return GaussianModel(np.zeros(12), np.eye(12), (3, 2, 2))

    register(ModelSpec("throwaway", "toy", resolution=2, steps=7, load=load))
    assert "throwaway" in available_models() and lib.models.MODELS["throwaway"].steps == 7
    assert isinstance(load_model("throwaway", "cpu"), GaussianModel)
    assert made == [("throwaway", "cpu", None)]
    with pytest.raises(ValueError, match="registered already"):
        register(ModelSpec("throwaway", "toy", load=load))
    with pytest.raises(ValueError, match="no loader"):
        register(ModelSpec("other", "toy"))
    register(ModelSpec("throwaway", "gaussian", resolution=4), replace=True)
    assert load_model("throwaway").sample_shape == (3, 4, 4)


def test_random_labels_and_descriptions_per_kind_of_model():
    from lib.models import PROMPTS

    unet, gauss = load_model("tiny-a"), GaussianModel(np.zeros(12), np.eye(12), (3, 2, 2))
    g = torch.Generator().manual_seed(0)
    labels = unet.random_labels(300, g)
    assert len(labels) == 300 and set(labels) == set(unet.classes)
    assert labels == unet.random_labels(300, torch.Generator().manual_seed(0))
    assert gauss.random_labels(5) is None and gauss.describe("cat") is None
    assert unet.describe("cat") == "cat"
    assert len(PROMPTS) > 20 and len(set(PROMPTS)) == len(PROMPTS)
    with pytest.raises(ValueError, match="positive"):
        unet.random_labels(0)


@pytest.mark.parametrize("name", ["tiny-a", "tiny-b"])
def test_embedded_models_load_and_predict_noise(name):
    """The committed weights load (fp16 on disk, float32 in memory) and predict eps of the
    input's shape; the sha256 in the model card is the file's."""
    import hashlib

    from lib.models import model_dir

    model = load_model(name)
    card = (model_dir(name) / "card.json").read_text()
    weights = (model_dir(name) / "diffusion_pytorch_model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() in card
    assert len(weights) <= 16 * 2**20
    assert sum(p.numel() for p in model.unet.parameters()) <= 8_000_000
    assert json.loads(card)["segments"], "the card must say what hardware trained the model"
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    eps = model.eps(x, 900)
    assert eps.shape == (4, 3, 32, 32) and eps.dtype == torch.float32 and torch.isfinite(eps).all()
    # held-out noise prediction as good as the card says (predicting zero scores 1, returning
    # the input scores about 1.3 at small t)
    crops = photo_crops(64, 32, split="test", seed=7)
    mse = eps_mse_by_band(model, crops, bands=((0, 100), (700, 900)), per_band=2,
                          generator=torch.Generator().manual_seed(0))
    card_mse = json.loads(card)["quality"]["eps_mse_test"]
    for band, value in mse.items():
        assert value < 0.5 and value == pytest.approx(card_mse[band], rel=0.3), (band, value)
    with pytest.raises(ValueError, match="NaN"):
        model.eps(torch.full((1, 3, 32, 32), float("nan")), 10)


def test_gaussian_from_eigh_matches_the_covariance_and_the_cached_load(tmp_path, monkeypatch):
    import lib.models
    from lib.whitening import covariance

    rng = np.random.default_rng(2)
    D = 12
    A = rng.standard_normal((D, D))
    cov, mu = A @ A.T / D + 0.1 * np.eye(D), rng.standard_normal(D)
    lam, U = np.linalg.eigh(cov)
    a, b = GaussianModel(mu, cov, (3, 2, 2)), GaussianModel.from_eigh(mu, lam, U, (3, 2, 2))
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    assert torch.allclose(a.eps(x, 700), b.eps(x, 700), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="eigenvalues"):
        GaussianModel.from_eigh(mu, lam[:-1], U, (3, 2, 2))
    # the loaded model's moments are those of the crops, and come from the disk cache next time
    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path))
    lib.models._crop_eigh.cache_clear()
    m = lib.models.load_gaussian("cpu", None, n=300, size=4, seed=5)
    X = photo_crops(300, 4, split="train", seed=5).reshape(300, -1)
    rebuilt = (m.eigvecs * m.eigvals) @ m.eigvecs.T
    assert torch.allclose(rebuilt, torch.as_tensor(covariance(X)), atol=1e-10)
    assert torch.allclose(m.mean, torch.as_tensor(X.mean(0), dtype=torch.float64))
    assert len(list((tmp_path / "gaussian_model").glob("*.pkl"))) == 1
    lib.models._crop_eigh.cache_clear()
    again = lib.models.load_gaussian("cpu", None, n=300, size=4, seed=5)
    assert torch.equal(again.eigvecs, m.eigvecs)
    lib.models._crop_eigh.cache_clear()


def test_embedded_model_runs_in_chunks_with_the_numbers_of_one_call():
    import copy

    m = load_model("tiny-a")
    assert m.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2 * m.cpu_chunk + 3, *m.sample_shape, generator=torch.Generator().manual_seed(0))
    plain = copy.deepcopy(m.unet).to(memory_format=torch.contiguous_format)
    labels = m.cond(["cat"]).expand(len(x))
    with torch.no_grad():
        whole = plain(x, torch.full((len(x),), 700), class_labels=labels).sample
    chunked = m.eps(x, 700, m.cond(["cat"]))
    assert chunked.shape == x.shape and chunked.is_contiguous()
    assert float((chunked - whole).norm() / whole.norm()) < 1e-5  # float32 rounding only
    # a sample's prediction does not depend on the batch around it
    part = m.eps(x[m.cpu_chunk - 2:m.cpu_chunk + 2], 700, m.cond(["cat"]))
    assert torch.allclose(part, chunked[m.cpu_chunk - 2:m.cpu_chunk + 2], rtol=1e-5, atol=1e-6)


def test_network_use_counts_images_and_guided_passes_and_time():
    from lib.models import DiffusionModel, network_use

    class Counting(DiffusionModel):
        name = "counting-test"

        def _predict(self, x_t, t, cond):
            return torch.zeros_like(x_t) if cond is None else torch.ones_like(x_t)

    m = Counting(torch.linspace(0.99, 0.01, 1000), (1, 2, 2))
    before = network_use().get("counting-test", {"evaluations": 0, "seconds": 0.0})
    m.eps(torch.zeros(3, 1, 2, 2), 500)
    m.eps(torch.zeros(2, 1, 2, 2), 500, torch.ones(2), 2.0)  # guided: two passes
    after = network_use()["counting-test"]
    assert after["evaluations"] - before["evaluations"] == 3 + 2 * 2
    assert after["seconds"] >= before["seconds"]


def test_a_kernel_keeps_its_network_use_in_the_runners_file(tmp_path, monkeypatch):
    import json

    import IPython

    import lib.experiment
    from lib.models import network_use
    from lib.profiles import NETWORK_LOG_ENV

    hooks = []

    class Shell:
        events = type("E", (), {"register": staticmethod(lambda name, f: hooks.append((name, f)))})

    shell = Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    path = tmp_path / "use.json"
    monkeypatch.setenv(NETWORK_LOG_ENV, str(path))
    lib.experiment._log_network_use()
    lib.experiment._log_network_use()  # registered once per kernel
    assert [h[0] for h in hooks] == ["post_run_cell"]
    from lib.cache import cache_use

    assert json.loads(path.read_text()) == {"network": network_use(), "cache": cache_use()}
    path.unlink()
    hooks[0][1]()  # after the next cell
    assert path.exists()
