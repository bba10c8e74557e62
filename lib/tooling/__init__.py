"""The book's build tooling, apart from the science in ``lib``: executing chapters into runs
(:mod:`lib.tooling.runner`), building the HTML book from a run (:mod:`lib.tooling.book`), the
Sphinx extension that numbers figures by chapter and serves the offline assets
(:mod:`lib.tooling.sphinx_ext`, ``web/``). ``python -m lib run|book`` drives the first two.
"""
