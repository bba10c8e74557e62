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

import numpy as np

from lib import checks

__all__ = ["PAPER_NUMBERS", "FIXED_NUMBERS", "typed_numbers", "glue", "glue_all", "glued_values", "Words",
           "span", "significant", "format_table", "Table", "mark", "decision_cells",
           "DECISION_HEADER"]

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


class Words:
    """Text for myst-nb's ``glue``, pasted exactly as written.

    ``{glue:text}`` reads the glued value's plain-text form back with ``ast.literal_eval``, so
    a bare ``0.80`` would come back as the float ``0.8`` and lose its trailing zero. The
    plain-text form of ``Words`` is therefore a Python string literal (``'0.80'``), which reads
    back as the text itself; ``str()`` gives the text.
    """

    def __init__(self, text):
        self.text = str(text)

    def __repr__(self) -> str:
        return repr(self.text)

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        return isinstance(other, Words) and other.text == self.text

    __hash__ = None


def span(values, fmt: str = ".2f", *, scale: float = 1.0) -> Words:
    """The range of some numbers as prose: ``0.96-0.99``, or one number when they round alike.

    For a glued sentence such as "the RMS distance is 0.96-0.99 across models".

    Args:
        values: the numbers (NaNs are left out; none left gives ``-``).
        fmt: a format spec for each end (``".2f"``, ``".0f"``, ``".0%"``, ``","``).
        scale: multiply by this first (e.g. 100 for percentages written as numbers).

    Returns:
        A :class:`Words` with ``lo-hi`` (``lo to hi`` when either end is negative, so a minus sign
        is never read as a dash), or the single value when both ends print the same.
    """
    scale = checks.number(scale, "scale")
    v = np.asarray([checks.real(x, "values") * scale for x in np.ravel(values)], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Words("-")
    lo, hi = format(float(v.min()), fmt), format(float(v.max()), fmt)
    if lo == hi:
        return Words(lo)
    sep = " to " if v.min() < 0 else "-"
    return Words(f"{lo}{sep}{hi}")


#: the columns of :func:`decision_cells`
DECISION_HEADER = ["linear", "kernel's gain in R²", "whitening", "exponent p", "levels",
                   "zca", "alignments"]


def mark(holds: bool) -> str:
    """A test's outcome as a check (held) or a cross (failed)."""
    return "\u2713" if holds else "\u2717"


def decision_cells(decision) -> list[str]:
    """One table row for a :class:`lib.linear_map.Decision`: each point's outcome (a check or
    a cross) with the numbers behind it, estimates with their intervals in parentheses and the
    per-bin levels and alignments from the largest eigenvalues down."""
    def est(e, digits=2):
        return f"{e.value:.{digits}f} ({e.low:.{digits}f}, {e.high:.{digits}f})"

    lin, white, zca = (decision[p].estimates for p in ("linear", "whitening", "zca"))
    return [mark(decision["linear"].holds), est(lin["nonlinear_gain"], 3),
            mark(decision["whitening"].holds), est(white["exponent"]),
            " \u00b7 ".join(f"{e.value:.2f}" for e in white["level"]), mark(decision["zca"].holds),
            " \u00b7 ".join(f"{e.value:.2f}" for e in zca["alignment"])]


def _table_cells(header, rows, digits) -> list[list[str]]:
    """The cells of a table as strings: floats to their column's decimals, None as ``-``."""
    if isinstance(digits, dict):
        unknown = set(digits) - set(header)
        if unknown:
            raise ValueError(f"digits names columns that are not in the header: {sorted(unknown)}")
        per_column = [digits.get(h, 3) for h in header]
    else:
        per_column = [digits] * len(header)

    def cell(v, d) -> str:
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return f"{v:.{d}f}"
        return str(v)

    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns")
    return [[cell(v, d) for v, d in zip(row, per_column)] for row in rows]


def format_table(header, rows, *, digits=3) -> str:
    """A plain-text table with right-aligned columns; floats rounded to ``digits`` decimals.

    Args:
        header: column names.
        rows: sequences of the same length as ``header`` (str, int, float or None).
        digits: decimals for every float, or a dict ``{column name: decimals}`` with the
            default 3 for the others (print each number only to the precision that is robust).
    """
    header = [str(h) for h in header]
    body = _table_cells(header, rows, digits)
    widths = [max(len(h), *(len(r[j]) for r in body)) if body else len(h) for j, h in enumerate(header)]
    lines = [" | ".join(h.rjust(w) for h, w in zip(header, widths)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


class Table:
    """A table that renders as an HTML table in the book and as aligned text in a terminal.

    ``display(Table(header, rows))`` in a chapter: the page shows an HTML table, while the
    plain-text form (:func:`format_table`, the same rounded values) is what a console prints and
    what nbval compares alongside the HTML. Cells that are already strings are shown as they
    are, so a column can carry its own rounding (:func:`significant`).

    Args:
        header, rows, digits: as for :func:`format_table`.
        caption: an optional line above the table.
    """

    def __init__(self, header, rows, *, digits=3, caption: str | None = None):
        self.header = [str(h) for h in header]
        self.rows = [list(r) for r in rows]
        self.caption = caption
        self.text = format_table(self.header, self.rows, digits=digits)
        self.cells = _table_cells(self.header, self.rows, digits)

    def __repr__(self) -> str:
        return (f"{self.caption}\n" if self.caption else "") + self.text

    def _repr_html_(self) -> str:
        import html

        def numeric(c: str) -> bool:
            return bool(re.fullmatch(r"[-+<>~ ]*[\d.,]+(e[-+]?\d+)?%?|nan|-", c))

        numeric_column = [all(numeric(row[j]) for row in self.cells) for j in range(len(self.header))]
        head = "".join(f'<th class="{"num" if num else "text"}">{html.escape(h)}</th>'
                       for h, num in zip(self.header, numeric_column))
        body = "".join("<tr>" + "".join(
            f'<td class="{"num" if numeric(c) else "text"}">{html.escape(c)}</td>' for c in row) + "</tr>"
            for row in self.cells)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<table class="lib-table">{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


def significant(x: float, digits: int = 3, *, floor: float | None = None) -> str:
    """``x`` rounded to ``digits`` significant digits, for a number printed in a checked output.

    Printed numbers are compared by nbval on every machine, so they carry only the digits that
    survive another CPU's rounding (``lib.numerics``). Large numbers are written out in full with
    thousands separators (``24,200``, not ``2.42e+04``); small ones in scientific notation.

    Args:
        x: the number (NaN and infinities print as ``nan``, ``inf``, ``-inf``).
        digits: significant digits (at least 1).
        floor: magnitudes below it print as ``< floor``: a value at round-off level (an exact
            fit's error, say) has no digits that mean anything.
    """
    digits = checks.count(digits, "digits")
    x = checks.real(x, "x")
    if floor is not None:
        floor = checks.number(floor, "floor", lo=0)
    if not np.isfinite(x):
        return str(x)
    if floor is not None and abs(x) < floor:
        return f"< {floor:.0e}"
    rounded = float(f"{x:.{digits}g}")
    if rounded == 0:
        return "0"
    exponent = int(np.floor(np.log10(abs(rounded))))
    if exponent >= digits - 1:  # an integer at this precision: written out in full
        return f"{rounded:,.0f}"
    if exponent >= -3:
        return f"{rounded:.{digits - 1 - exponent}f}"
    return f"{rounded:.{digits - 1}e}"


def glue(name: str, value) -> None:
    """Glue a number or a :class:`Words` for the prose, without displaying it.

    myst-nb's ``{glue:text}`name:.2f``` formats the glued value's plain-text form, which for a
    numpy scalar is ``np.float64(0.29)`` and cannot be formatted; this converts numpy and torch
    scalars to Python numbers first, and keeps six significant digits of a float.

    Args:
        name: the key the prose uses.
        value: a number (Python, numpy or a one-element torch tensor), or text to paste as is
            (a ``str`` or :class:`Words`).
    """
    from myst_nb import glue as _glue

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


def glue_all(numbers) -> None:
    """Glue every ``{name: value}`` of a chapter's numbers (:mod:`lib.findings`) with
    :func:`glue`, in one call."""
    for name, value in dict(numbers).items():
        glue(name, value)


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
