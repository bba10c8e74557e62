import numpy as np
import pytest
import torch

from lib import checks


def test_batch_takes_arrays_and_tensors_and_names_what_is_wrong():
    x = checks.batch(np.zeros((2, 3, 4, 4), dtype=np.float32), "x")
    assert torch.is_tensor(x) and x.dtype == torch.float32
    ints = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    assert checks.batch(ints, "x").dtype == torch.long  # kept as given ...
    assert checks.batch(ints, "x", floating=True).dtype == torch.float32  # ... or made float
    with pytest.raises(ValueError, match=r"noise must have shape \(B, C, H, W\), got \(3, 4, 4\)"):
        checks.batch(torch.zeros(3, 4, 4), "noise")
    with pytest.raises(ValueError, match=r"\(N, C, S, S\)"):
        checks.batch(torch.zeros(1, 3, 4, 5), "a", layout="(N, C, S, S)", square=True)
    bad = torch.zeros(1, 1, 2, 2)
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="z0 contains NaN or inf"):
        checks.batch(bad, "z0")
    assert checks.batch(torch.empty(2, 3, 4, 4, device="meta"), "x").device.type == "meta"


def test_samples_and_pairs():
    X, shape = checks.samples(torch.ones(5, 3, 2, 2), "X")
    assert X.shape == (5, 12) and X.dtype == np.float64 and shape == (3, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        checks.samples(np.ones(5), "X")
    with pytest.raises(ValueError, match="NaN"):
        checks.array([1.0, np.inf], "a")
    with pytest.raises(ValueError, match="images and noises must have the same number of rows"):
        checks.paired_samples(np.ones((4, 2)), np.ones((3, 2)), ("images", "noises"))


@pytest.mark.parametrize("value", [0, -1, 2.0, "3", True, None])
def test_count_refuses_what_is_not_a_count_and_says_what_it_got(value):
    import re

    with pytest.raises(ValueError, match=f"n must be a positive integer, got {re.escape(repr(value))}$"):
        checks.count(value, "n")


def test_count_number_fraction_known_answers():
    assert checks.count(np.int64(3), "n") == 3 and checks.count(torch.tensor(2), "n") == 2
    assert checks.count(0, "k", 0) == 0
    with pytest.raises(ValueError, match="k must be an integer >= 0"):
        checks.count(-1, "k", 0)
    assert checks.number(np.float32(1e-3), "t", lo=0) == pytest.approx(1e-3)
    for text in ("1e-3", b"0.5"):  # text is no number, even text that parses as one
        with pytest.raises(ValueError, match="t must be a number, got the string"):
            checks.number(text, "t", lo=0)
    for odd in (1 + 0j, np.complex64(1), torch.tensor(1 + 2j), None, [1.0], torch.ones(2)):
        with pytest.raises(ValueError, match="t must be a number, got"):
            checks.number(odd, "t")
    with pytest.raises(ValueError, match="t must be a finite number >= 0"):
        checks.number(-1, "t", lo=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        checks.number(float("nan"), "p", lo=0, hi=1)
    assert checks.fraction(1, "s") == 1.0 and checks.fraction(0, "a", zero=True) == 0.0
    for value, kw in [(0, {}), (1, {"one": False}), (float("nan"), {"zero": True}), (1.5, {})]:
        with pytest.raises(ValueError, match="must lie in"):
            checks.fraction(value, "s", **kw)
    with pytest.raises(ValueError, match=r"s must be a number in \(0, 1\]"):
        checks.fraction("half", "s")
    with pytest.raises(ValueError, match="got bool True"):
        checks.number(True, "t")  # a bool is no number to a reader
    with pytest.raises(ValueError, match="got bool True"):
        checks.fraction(True, "s")
