"""lib: the code behind the book "First-step inference in diffusion models learns image de-whitening".

Modules (one concern each): ``data`` (bundled photographs and crops), ``whitening`` (Eq. 5, 9),
``schedule`` (Eq. 1), ``plotting`` (figures that render offline), ``profiles`` (cpu/gpu/sd),
``runner`` and ``book`` (execute chapters, build the HTML book).
"""

__version__ = "0.1.0"
