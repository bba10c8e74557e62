"""lib: the code behind the book "First-step inference in diffusion models learns image de-whitening".

The paper, one module per step of its argument:

* ``schedule``: the noise schedule and the forward process, Eq. (1);
* ``models``: every diffusion model behind one ``eps`` (Eq. 2), and the registry ``MODELS``;
* ``sampling``: deterministic DDIM and its inversion, Eqs. (3)-(4), and SDEdit;
* ``noise``: noises with a shared low-frequency component, the slerp of Eq. (11), normality;
* ``correlation``: how much of a noise survives in its image (Sec. 1, Fig. 2);
* ``fixed_point``: the noise of Eq. (6) by the iteration of Eq. (7) (Sec. 3);
* ``whitening``: ZCA and the other whitenings, Eq. (5);
* ``linear_map``: the noise/image map of Eqs. (8)-(9) and its test against whitening (Fig. 5);
* ``annealing``: the model-free search of Alg. 1 (Sec. 5);
* ``editing``: image variation and editing (Sec. 6).

Around it: ``hypothesis`` (Hypothesis 1 end to end: chapter 4's pair sets, maps and decisions),
``data`` (the bundled photographs, crops and image folders), ``metrics`` (PSNR, SSIM,
Pearson, ring averages), ``quality`` (the embedded models' sample statistics), ``profiles``
and ``experiment`` (every setting of a run, and a chapter's models and data from it),
``checks`` (input checks), ``plotting`` and ``prose`` (figures and numbers for the pages),
``findings`` (each chapter's prose numbers from its results, one dict per chapter),
``cache`` and ``numerics``. The tools are the subpackage ``lib.tooling``: executing chapters
(``runner``), building the HTML (``book``), the benchmarks (``bench``, ``python -m lib bench``)
and how the embedded models were trained (``train``, ``python -m lib train``).
"""

__version__ = "0.1.0"

#: the package's layers, bottom first. A module imports only from its own layer or lower ones,
#: and no imports form a cycle; ``tests/test_layers.py`` walks every import, those inside
#: functions too. ``tooling`` stands for the subpackage ``lib.tooling``.
LAYERS = (
    ("checks", "numerics", "schedule", "cache"),  # foundations
    ("metrics", "whitening", "noise", "correlation", "linear_map", "annealing", "sampling",
     "editing", "quality"),  # model-free maths (a model is passed in, never imported)
    ("data", "models", "profiles", "fixed_point"),  # models, data and run settings
    ("experiment", "hypothesis", "findings", "plotting", "prose"),  # what the chapters call
    ("tooling", "__main__"),  # tools: running, building, benchmarks (bench), training (train)
)

#: the modules of the paper's argument, in its order
__all__ = ["schedule", "models", "sampling", "noise", "correlation", "fixed_point", "whitening",
           "linear_map", "annealing", "editing"]
