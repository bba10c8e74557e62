"""pytest set-up shared by the unit tests and the notebook checks.

nbval re-executes each committed chapter and compares the outputs it checks with the committed
ones. Its kernels run in a deliberately perturbed floating-point environment
(``lib.numerics.ENV``: rounding jitter in the noise predictions and the annealing product, and
ATen's AVX2 kernels instead of AVX-512), so a checked output that would change on another x86
CPU fails here, on any one machine, instead of on a reader's. ``LIB_NBVAL_PERTURB=0``
runs the kernels in the plain environment instead (to compare the two).
"""

import os

import pytest
from hypothesis import settings

from lib.numerics import ENV as PERTURBED_ENV

# property-based tests (tests/test_properties.py): the same examples on every run and machine,
# nothing written to disk, no per-example deadline (the first call of a function imports torch)
settings.register_profile("book", derandomize=True, database=None, deadline=None,
                          max_examples=60)
settings.load_profile("book")

_plain = {k: os.environ.get(k) for k in PERTURBED_ENV}


def _is_notebook_cell(item) -> bool:
    return type(item).__module__.startswith("nbval")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """nbval's kernel starts in the set-up of a notebook's first cell and inherits this env."""
    perturb = _is_notebook_cell(item) and os.environ.get("LIB_NBVAL_PERTURB", "1") != "0"
    for key, value in PERTURBED_ENV.items():
        if perturb:
            os.environ[key] = value
        elif _plain[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = _plain[key]


@pytest.fixture(scope="session", autouse=True)
def _tests_own_cache(tmp_path_factory):
    """The tests' own disk cache (``LIB_CACHE_DIR``), shared by one session and then dropped: a
    test never reads the reader's ``runs/cache``, nor leaves entries in it. Re-executed
    chapters inherit it too."""
    from lib.cache import CACHE_DIR_ENV

    before = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(tmp_path_factory.mktemp("lib-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = before
