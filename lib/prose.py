"""Numbers in the chapters' prose: every measured number is glued from the cell that computed it.

A chapter's text states what *its* run measured, so a book built from another profile's run
(``gpu``, ``sd``, a small test profile) must show that run's numbers, not the ``cpu`` run's. The
chapters therefore write every measured number as a myst-nb ``{glue:text}`` role, and only the
paper's own numbers (listed in :data:`PAPER_NUMBERS`, each with where it comes from) and a few
fixed conventions of the book (:data:`FIXED_NUMBERS`) are typed.

:func:`typed_numbers` finds the numbers a markdown cell types by hand that look measured:
anything with a decimal point or a percent sign, and integers of two digits or more. It skips
what is structure rather than measurement: headings, list markers, references to sections,
figures, equations and chapters (``Sec. 4.2``, ``Figs. 7-13``, ``chapter 4``, a ``[3.1](#sec)``
link), glue/ref/cite roles, code, display math and powers of ten in inline math.
"""

from __future__ import annotations

import numbers
import re

__all__ = ["PAPER_NUMBERS", "FIXED_NUMBERS", "typed_numbers", "glue", "glued_values"]

# The paper's own numbers that the chapters quote (typed, and said to be the paper's).
PAPER_NUMBERS = {
    "0.98": "t = 0.98T, the timestep of Eq. (7) (Sec. 3)",
    "980": "t = 0.98T for T = 1000 steps",
    "1000": "T, the number of training timesteps (Sec. 2)",
    "1,000": "Fig. 2: 1,000 noises with random prompts on SDXL-Turbo; 1,000 timesteps",
    "0.00085": "the beta schedule's first value (Stable Diffusion, Sec. 2)",
    "0.012": "the beta schedule's last value (Stable Diffusion, Sec. 2)",
    "0.0047": "abar_T of the Stable Diffusion schedule",
    "50,000": "N, the pairs behind Fig. 5 and the norms table (Sec. 4.2)",
    "7.8795": "norms table: PCA, 2-norm", "7.88": "norms table: PCA, 2-norm",
    "434.2": "norms table: PCA, Frobenius norm",
    "3.8305": "norms table: ZCA, 2-norm", "3.83": "norms table: ZCA, 2-norm",
    "136.6": "norms table: ZCA, Frobenius norm",
    "4.8027": "norms table: Cholesky, 2-norm", "4.80": "norms table: Cholesky, 2-norm",
    "204.6": "norms table: Cholesky, Frobenius norm",
    "2.1": "Stable Diffusion 2.1, the model of the norms table",
    "1.5": "Stable Diffusion 1.5",
    "512": "Stable Diffusion's image side in pixels (64x64 latents)",
    "64x64": "SDXL-Turbo's latent side in Fig. 2",
    "0.5": "SDEdit strength used in the paper's Sec. 6",
}

# Conventions of the book, not results of a run.
FIXED_NUMBERS = {
    "95": "the level of every bootstrap interval (95 %)",
    "4.0": "the licence, CC BY 4.0",
    "8-bit": "the images' quantisation",
}

_STRIP = [re.compile(p, re.S) for p in (
    r"\{glue(?::[a-z]+)?\}`[^`]*`",                       # glued numbers
    r"\{[a-z:]+\}`[^`]*`",                                  # ref, numref, eq, cite, func, ...
    r"```(?!\{)[^\n]*\n.*?```",                             # code blocks
    r"(?m)^\s*```[^\n]*$", r"(?m)^:[a-z-]+:[^\n]*$",                # directive fences and options: their text stays
    r"`[^`]*`",                                             # inline code
    r"\$\$.*?\$\$",                                         # display math
    r"\([a-z0-9-]+\)=",                                     # labels
    r"\[[\d.\-, ]+\]\(#[^)]*\)",                            # section links such as [3.1](#sec)
    r"\]\([^)]*\)",                                         # link targets
    r"\\(?:tag|label)\{[^}]*\}",
    r"\d+\^\{?-?\d*\}?", r"[\^_]\{[^}]*\}", r"[\^_]-?\d",  # powers and indices in math
    r"\\(?:frac|tfrac)\{\d+\}\{[^}]*\}",                    # \frac{1}{k^2}
    r"\d+/\d+(?!\.\d)",                                     # a stated fraction such as 1/k
    r"\[\s*(?:0\.0*1|10*)\s*,\s*(?:0\.0*1|10*)\s*[)\]]",     # a decade: [0.1, 1), [1, 10)
    r"\b\d+x\d+\b(?! latents)",                             # block and image sides: 8x8
)]
# references to the paper's or the book's structure
_STRUCTURE = re.compile(
    r"\b(?:Secs?|Figs?|Eqs?|Algs?|Tables?|Hypothes[ie]s|[Cc]hapters?|[Aa]ppendix|[Ss]ections?|"
    r"[Pp]oints?|steps? of Alg)\.?\s*\(?[\d.]+[a-z]?\)?"
    # a list or range of them: "Figs. 7-13", "Secs. 3, 4": numbers without a leading "0."
    r"(?:\s*(?:[-,–]|and|to)\s*\(?[1-9]\d*(?:\.\d+)?[a-z]?\)?(?!\d|\.\d))*")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*$", re.M)
_LIST_MARKER = re.compile(r"^\s*\d+\.\s", re.M)
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?:\s?%)?(?![\w])")


def typed_numbers(markdown: str, allowed=None) -> list[str]:
    """Numbers typed into a markdown cell that look measured and are not on an allowed list.

    Args:
        markdown: the cell's source.
        allowed: numbers (as written) that may be typed; default the keys of
            :data:`PAPER_NUMBERS` and :data:`FIXED_NUMBERS`.

    Returns:
        The offending numbers, in order, as written (``"0.44"``, ``"256"``, ``"6 %"``).
    """
    if allowed is None:
        allowed = set(PAPER_NUMBERS) | set(FIXED_NUMBERS)
    text = _HEADING.sub(" ", markdown)
    text = _LIST_MARKER.sub(" ", text)
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    text = _STRUCTURE.sub(" ", text)
    found = []
    for m in _NUMBER.finditer(text):
        token = m.group().rstrip(",")
        bare = token.replace("%", "").strip()
        if bare in allowed or token in allowed:
            continue
        measured = "." in bare or "%" in token or len(bare.replace(",", "")) >= 2
        if measured:
            found.append(token)
    return found


def glue(name: str, value) -> None:
    """Glue a number or a :class:`lib.plotting.Words` for the prose, without displaying it.

    myst-nb's ``{glue:text}`name:.2f``` formats the glued value's plain-text form, which for a
    numpy scalar is ``np.float64(0.29)`` and cannot be formatted; this converts numpy and torch
    scalars to Python numbers first, and keeps six significant digits of a float.

    Args:
        name: the key the prose uses.
        value: a number (Python, numpy or a one-element torch tensor), or text to paste as is
            (a ``str`` or :class:`lib.plotting.Words`).
    """
    from myst_nb import glue as _glue

    from lib.plotting import Words

    if isinstance(value, str):
        value = Words(value)  # pasted as is, not as a quoted repr
    if not isinstance(value, (Words, numbers.Number)) and hasattr(value, "item"):
        value = value.item()  # numpy scalar, 0-d array or one-element tensor (else item() raises)
    if isinstance(value, bool) or not isinstance(value, (Words, numbers.Number)):
        raise TypeError(f"glue {name!r}: expected a number or Words, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real):
        # six significant digits: more than any prose prints, and few enough that the checked
        # outputs (nbval compares the glued record too) do not differ between CPUs' roundings
        value = float(f"{float(value):.6g}")
    _glue(name, value, display=False)


def glued_values(nb) -> dict[str, str]:
    """What an executed notebook glued: ``{key: plain-text form}``, from its cells' outputs.

    Args:
        nb: the notebook (``nbformat`` v4), with outputs.
    """
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                values[meta["name"]] = out["data"][meta["mime_prefix"] + "text/plain"]
    return values
