"""What each chapter states: its prose numbers, from its results, as one dict per chapter.

A chapter computes its results (statistics, solver runs, decisions) in its cells, then glues
every number its text states in one call::

    glue_all(correlation_numbers(NAMES, stats, avg_corr, profiles, nulls, ...))

The functions here only read results and summarise them for the prose (ranges across models,
the first models' values as ``m0_...``, ``m1_...``, ``m2_...``); they compute nothing a test of
the paper's claims depends on. Keys are the names the chapter's ``{glue:text}`` roles use. A
profile with fewer models than the prose names gets NaN (numbers) or ``-`` (text) in the
missing places, so its book still builds (:func:`per_model`).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from lib import checks
from lib.annealing import anneal_loss
from lib.fixed_point import input_norm
from lib.metrics import improvement, pearson, similarity, variation_scores
from lib.noise import normality
from lib.prose import Words, span
from lib.quality import QUALITY_BAR
from lib.sampling import ddim_timesteps, gaussian_ddim_gain, redo_steps

__all__ = ["per_model", "gaussian_gains", "correlation_numbers", "pairing_rows", "PAIRING_HEADER",
           "SOLVER_TAGS", "fixed_point_numbers", "SOLVER_HEADER", "solver_rows", "START_HEADER",
           "start_rows", "input_sizes", "ANNEAL_HEADER", "annealing_rows", "annealing_numbers",
           "VARIATION_HEADER", "variation_rows", "EDIT_HEADER", "edit_rows", "applications_numbers",
           "appendix_numbers"]

NAN = float("nan")


def per_model(names, numbers: Callable[[str], Mapping], *, slots: int = 3) -> dict:
    """The first ``slots`` models' numbers, keyed ``m0_<key>``, ``m1_<key>`` ... with the
    model's name as ``m<i>_name``.

    Args:
        names: the chapter's models, in order.
        numbers: ``numbers(name)`` gives one model's ``{key: number or Words}``.
        slots: how many models the prose names; a profile with fewer gets NaN for a number
            and ``-`` for text in the missing slots (keys from the first model's dict).
    """
    names = list(names)
    if not names:
        raise ValueError("per_model needs at least one model name")
    first = dict(numbers(names[0]))
    out = {}
    for i in range(slots):
        if i < len(names):
            values = first if i == 0 else dict(numbers(names[i]))
            out[f"m{i}_name"] = Words(names[i])
        else:
            values = {k: Words("-") if isinstance(v, (Words, str)) else NAN
                      for k, v in first.items()}
            out[f"m{i}_name"] = Words("-")
        out.update({f"m{i}_{k}": v for k, v in values.items()})
    return out


def gaussian_gains(model, steps: int, spacing: str, *, lam_min: float = 1e-3) -> dict:
    """The DDIM gain of the Gaussian model against ``sqrt(lambda)``, eigendirection by direction
    (:func:`lib.sampling.gaussian_ddim_gain`): where the run starts from noise of variance
    ``1 / abar`` at its first step, the image keeps the noise's coordinate at the data's scale.

    Returns:
        ``n_mid`` (directions with ``lam_min < lambda < 1 / abar_start``), ``lam_cap``
        (``1 / abar_start``), ``t_start``, the ratio ``g / sqrt(lambda)`` there (``gain_lo``,
        ``gain_hi``, ``gain_median``), and in the top direction (``gain_top``, ``lam_top``).
    """
    lam = model.eigvals.double().cpu().numpy()
    g, abar_start = gaussian_ddim_gain(lam, model.alphas_cumprod, steps, spacing)
    mid = (lam > lam_min) & (lam < 1 / abar_start)
    if not mid.any():
        raise ValueError(f"no eigenvalue lies between {lam_min:g} and 1/abar_start = "
                         f"{1 / abar_start:.3g}")
    ratio = g[mid] / np.sqrt(lam[mid])
    top = int(lam.argmax())
    return {"n_mid": int(mid.sum()), "lam_cap": 1 / abar_start,
            "t_start": int(ddim_timesteps(steps, spacing)[0]), "gain_lo": float(ratio.min()),
            "gain_hi": float(ratio.max()), "gain_median": float(np.median(ratio)),
            "gain_top": float(g[top] / np.sqrt(lam[top])), "lam_top": float(lam[top])}


#: the columns of :func:`pairing_rows`
PAIRING_HEADER = ["model", "noises", "r paired", "r re-paired", "r independent", "z", "p",
                  "L2 paired", "L2 re-paired", "L2 independent"]


def pairing_rows(stats: Mapping) -> list[list]:
    """Chapter 2's table: one row per ``(model, noise set)`` of
    :class:`lib.correlation.PairingStats` (columns :data:`PAIRING_HEADER`)."""
    rows = []
    for (name, which), st in stats.items():
        m = st.summary()
        rows.append([name, which, m["r paired"], m["r re-paired"], m["r independent"],
                     f"{st.z_score:.0f}", f"{st.p_value:.1e}", m["L2 paired"],
                     m["L2 re-paired"], m["L2 independent"]])
    return rows


def correlation_numbers(names, stats: Mapping, avg_corr: Mapping, profiles: Mapping,
                        nulls: Mapping, *, n_set: int, n_fresh: int, steps: int, factor: int,
                        n_blocks: int, gains: dict | None = None) -> dict:
    """Chapter 2's prose numbers.

    Args:
        names: the models, in order.
        stats: ``{(name, "set" | "independent"): PairingStats}``.
        avg_corr: ``{name: SetAverageCorrelation}`` (Fig. 2a's averages).
        profiles, nulls: ``{name: OffsetProfile}`` of the paired and the re-paired
            cross-correlations (Fig. 2c).
        n_set, n_fresh, steps, factor: the noise sets' sizes, the DDIM steps, the block side.
        n_blocks: the shared block means (channels x blocks).
        gains: :func:`gaussian_gains` of the Gaussian model, or None when the profile has none.
    """
    names = list(names)
    indep = {name: stats[name, "independent"] for name in names}
    in_set = {name: stats[name, "set"] for name in names}
    summary = {key: {name: st.summary() for name, st in group.items()}
               for key, group in (("indep", indep), ("set", in_set))}
    first = indep[names[0]]
    p_floor = 1 / (1 + first.n_perm)
    peaks = {name: pr.peak() for name, pr in profiles.items()}
    out = per_model(names, lambda n: {"r_paired": summary["indep"][n]["r paired"],
                                      "same_pixel": profiles[n].at(0, 0)})
    out.update({
        "models": Words(", ".join(names)), "n_set": n_set, "n_fresh": n_fresh, "steps": steps,
        "n_perm": first.n_perm,
        "repaired_abs": max(abs(s["r re-paired"]) for s in summary["indep"].values()),
        "z_span": span([st.z_score for st in stats.values()], ".0f"),
        "p_floor": p_floor,
        "p_at_floor": Words("all" if all(st.p_value <= p_floor for st in stats.values())
                            else "not all"),
        "l2_paired": span([s["L2 paired"] for s in summary["indep"].values()]),
        "l2_repaired": span([s["L2 re-paired"] for s in summary["indep"].values()]),
        "l2_closer": span([1 - s["L2 paired"] / s["L2 re-paired"]
                           for s in summary["indep"].values()], ".0f", scale=100),
        "set_repaired": span([s["r re-paired"] for s in summary["set"].values()]),
        "set_paired": span([s["r paired"] for s in summary["set"].values()]),
        "set_ratio": span([s["r paired"] / s["r re-paired"] for s in summary["set"].values()],
                          ".0f"),
        "share_lowfreq": 100 / factor**2,
        "avg_shared": span([c.shared for c in avg_corr.values()]),
        "avg_control": span([c.control for c in avg_corr.values()]),
        "n_blocks": n_blocks, "chance": 1 / np.sqrt(n_blocks),
        "avg_seed": span([c.seed_image for c in avg_corr.values()]),
        "near": span([pr.neighbours() for pr in profiles.values()]),
        "ring2": span([pr.ring(2) for pr in profiles.values()]),
        "far": span([pr.far(4) for pr in profiles.values()]),
        "far_null": span([nl.far(4) for nl in nulls.values()], ".3f"),
        "peaks": Words("(0, 0) for every model" if all(v == (0, 0) for v in peaks.values())
                       else "; ".join(f"{v} for {name}" for name, v in peaks.items())),
        "explained": 100 * profiles[names[0]].at(0, 0) ** 2,
    })
    if gains is not None and "gaussian" in names:
        trained = [n for n in names if n != "gaussian"]
        r = {n: s["r paired"] for n, s in summary["indep"].items()}
        out["gauss_stronger"] = span([r["gaussian"] - r[n] for n in trained]
                                     + [profiles["gaussian"].at(0, 0) - profiles[n].at(0, 0)
                                        for n in trained])
        out.update({k: gains[k] for k in ("lam_cap", "t_start", "gain_lo", "gain_hi",
                                          "gain_median", "gain_top")})
        out["n_mid"] = Words(f"{gains['n_mid']:,}")
    else:  # no Gaussian model in this profile
        out.update({"gauss_stronger": Words("-"), "n_mid": Words("-")})
        out.update(dict.fromkeys(("lam_cap", "t_start", "gain_lo", "gain_hi", "gain_median",
                                  "gain_top"), NAN))
    return out


#: chapter 3's solvers as the prose names them: ``{solver label: key}``
SOLVER_TAGS = {"Picard": "picard", "Anderson (m = 5)": "anderson", "L-BFGS": "lbfgs"}


def _median_r(a, b) -> float:
    return float(np.median(pearson(a, b)))


def fixed_point_numbers(names, runs: Mapping, starts: Mapping, *, tol: float, sizes: Mapping,
                        zca_corr: Mapping, recon_err: Mapping, gauss_gap: Mapping,
                        moved: Mapping) -> dict:
    """Chapter 3's prose numbers.

    Args:
        names: the models, in order.
        runs: ``{(model, solver, "zero" | "random"): FixedPointResult}`` of the convergence
            study; ``starts``: ``{model: the random start}``.
        tol: the residual a run must reach to count as converged.
        sizes: ``{model: {"lo", "hi", "zero", "random", "end": ||x_t|| / sqrt(D)}}``.
        zca_corr: ``{model: (r with the ZCA-whitened image, with the image, with the
            PCA-whitened image)}``; recon_err: ``{model: (one-step error from the fixed point,
            from a random noise)}``.
        gauss_gap: ``{(solver, start): distance to the Gaussian model's exact fixed point}``.
        moved: ``{(model, solver): how far a 1e-6 perturbation moves the end point}``.
    """
    names = list(names)

    def model(name):
        own = {(s, i): r for (n, s, i), r in runs.items() if n == name}
        lowest, solver, init = min((float(np.median(r.lowest)), s, i) for (s, i), r in own.items())
        out = {"lowest": lowest, "lowest_by": Words(f"{solver} from a {init} start"),
               "converged": sum(int(r.reached(tol).sum()) for r in own.values())}
        for label, tag in SOLVER_TAGS.items():
            end = own[label, "random"].noise.cpu()
            out[f"{tag}_keeps_start"] = _median_r(end, starts[name])
            out[f"{tag}_ends_agree"] = _median_r(end, own[label, "zero"].noise.cpu())
            out[f"{tag}_error"] = float(np.median(own[label, "zero"].recon_error))
        lbfgs = own["L-BFGS", "zero"].residuals
        out.update({"size_end": float(sizes[name]["end"]),
                    "lbfgs_zero_start": float(np.median(lbfgs[0])),
                    "lbfgs_zero_lowest": float(np.median(lbfgs.min(0)))})
        out.update({f"fig4_{tag}": zca_corr[name][j] for j, tag in enumerate(("zca", "image", "pca"))})
        out.update({"recon_fp": recon_err[name][0], "recon_random": recon_err[name][1]})
        return out

    out = per_model(names, model)
    out.update({"size_zero": float(sizes[names[0]]["zero"]),
                "size_lo": float(min(v["lo"] for v in sizes.values())),
                "size_hi": float(max(v["hi"] for v in sizes.values()))})
    # the Gaussian model's run with the smallest final residual, and its distance to the fixed point
    residual, solver, init = min(((float(np.median(r.residuals[-1])), s, i)
                                  for (n, s, i), r in runs.items() if n == "gaussian"),
                                 default=(NAN, "-", "-"))
    out.update({"gauss_best_residual": residual, "gauss_best_gap": gauss_gap.get((solver, init), NAN),
                "gauss_best_by": Words(f"{solver} from a {init} start" if solver != "-" else "-")})
    for label in ("Picard", "Anderson (m = 5)"):
        values = [v for (_, s), v in moved.items() if s == label]
        out.update({f"moved_{SOLVER_TAGS[label]}_lo": min(values),
                    f"moved_{SOLVER_TAGS[label]}_hi": max(values)})
    return out


#: the columns of :func:`solver_rows`
SOLVER_HEADER = ["model", "solver", "start", "residual at start", "at end", "evaluations",
                 "lowest", "converged", "one-step error"]


def solver_rows(runs: Mapping, tol: float) -> list[list]:
    """Chapter 3's convergence table: per ``(model, solver, start)`` run, the median residual
    at the start and at the end, the evaluations spent, the median lowest residual, how many
    images got below ``tol``, and the median one-step error at the end."""
    return [[name, solver, start, f"{np.median(r.residuals[0]):.3f}",
             f"{np.median(r.residuals[-1]):.3f}", f"{r.evaluations[-1]:.0f}",
             f"{np.median(r.lowest):.4f}", f"{int(r.reached(tol).sum())}/{r.noise.shape[0]}",
             f"{np.median(r.recon_error):.3f}"] for (name, solver, start), r in runs.items()]


#: the columns of :func:`start_rows`
START_HEADER = ["model", "solver", "r(end from random, its start)",
                "r(end from random, end from zero)", "std of the end from zero"]


def start_rows(runs: Mapping, starts: Mapping) -> list[list]:
    """Chapter 3's start dependence: per model and solver, the median correlation of the end
    point from the random start with that start and with the end point from zero, and the
    standard deviation of the end point from zero."""
    rows = []
    for (name, solver, start), r in runs.items():
        if start != "random":
            continue
        end, from_zero = r.noise.cpu(), runs[name, solver, "zero"].noise.cpu()
        rows.append([name, solver, f"{_median_r(end, starts[name]):.3f}",
                     f"{_median_r(end, from_zero):.3f}", f"{float(from_zero.std()):.3f}"])
    return rows


def input_sizes(model, z0, end, t: int, *, draws: int = 16, seed: int = 5) -> dict:
    """Where chapter 3's iterates put the network's input: ``||a z0 + s eps|| / sqrt(D)``
    (:func:`lib.fixed_point.input_norm`) for training's noises (1 % and 99 % quantiles over
    ``draws`` standard normal noises per image, ``lo`` and ``hi``), the zero start, the random
    start of the study (seed 1) and the end point ``end`` (medians over the images)."""
    z0 = checks.batch(z0, "z0")
    draws = checks.count(draws, "draws")
    generator = torch.Generator().manual_seed(checks.seed(seed))
    trained = input_norm(model, z0.repeat(draws, 1, 1, 1),
                         torch.randn((draws * len(z0), *z0.shape[1:]), generator=generator), t)
    random_start = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    return {"lo": np.quantile(trained, 0.01), "hi": np.quantile(trained, 0.99),
            "zero": np.median(input_norm(model, z0, torch.zeros_like(z0), t)),
            "random": np.median(input_norm(model, z0, random_start, t)),
            "end": np.median(input_norm(model, z0, torch.as_tensor(end).cpu(), t))}


#: the columns of :func:`annealing_rows`
ANNEAL_HEADER = ["noise", "fwd loss", "r preview", "r image", "SSIM image", "PSNR image",
                 "noise std", "KS p", "norm ok", "acc first", "acc last"]


def annealing_rows(noises: Mapping, images: Mapping, previews: Mapping, shown_targets, targets,
                   dewhiten, runs: Mapping, *, n_chains: int, n_ks: int, central: float,
                   window: int, seed: int) -> list[list]:
    """Chapter 5's table (columns :data:`ANNEAL_HEADER`), one row per set of noises (the random
    starts and each loss's best noises, ``n_chains`` per target): the forward loss, the Pearson
    r of the preview ``W^-1 z + mu`` and the similarity of the model's image with the target,
    whether the noises still look like draws of N(0, I) (:func:`lib.noise.normality`), and a
    search's acceptance rate over its first and last ``window`` iterations.

    Args:
        noises, images, previews: ``{name: (targets x n_chains, ...)}``: the noises, what the
            model draws from them, and their decoded previews.
        shown_targets: the targets as images; targets: in the model's space.
        dewhiten: the :class:`lib.annealing.DeWhitening` of the loss.
        runs: ``{loss: AnnealResult}`` (no acceptance for the random starts).
    """
    tiled = torch.as_tensor(shown_targets).repeat_interleave(n_chains, 0)
    every = torch.as_tensor(targets).repeat_interleave(n_chains, 0)
    rows = []
    for name, z in noises.items():
        gauss = normality(z, n_ks=n_ks, central=central, seed=seed)
        sim = similarity(images[name], tiled).mean()
        acc = runs[name].history.acceptance if name in runs else None
        rows.append([name, anneal_loss(z, every, "forward", dewhiten).mean(),
                     similarity(previews[name], tiled).pearson.mean(), sim["pearson"],
                     sim["ssim"], sim["psnr"], gauss.std, gauss.ks_p, gauss.norm_share,
                     None if acc is None else float(acc[:window].mean()),
                     None if acc is None else float(acc[-window:].mean())])
    return rows


def annealing_numbers(rows: list, runs: Mapping, r_preview) -> dict:
    """Chapter 5's prose numbers from its table (:func:`annealing_rows`), its searches
    ``{loss: AnnealResult}`` (the first loss is the one the others are compared with: forward)
    and the preview correlations of the random noises."""
    table = {row[0]: dict(zip(ANNEAL_HEADER, row)) for row in rows}
    losses = list(runs)
    out = {"n_preview": len(r_preview), "preview_median": float(np.median(r_preview)),
           "preview_lo": float(np.min(r_preview)), "preview_hi": float(np.max(r_preview))}
    keys = {"fwd loss": "loss", "r image": "r", "SSIM image": "ssim", "PSNR image": "psnr",
            "noise std": "std", "KS p": "ks", "norm ok": "norm_ok", "acc first": "acc_first",
            "acc last": "acc_last"}
    for name, row in table.items():
        out.update({f"{name}_{key}": NAN if row[column] is None else float(row[column])
                    for column, key in keys.items()})
        ks = row["KS p"]  # a p-value below what the test resolves reads as a bound, not as 0.0e+00
        out[f"{name}_ks_text"] = Words("< 0.001" if ks < 1e-3 else f"= {ks:.2g}")
    others = [n for n in losses if n != "forward"]
    out.update({"acc_first": span([table[n]["acc first"] for n in losses], ".1f"),
                "acc_last_others": span([table[n]["acc last"] for n in others]),
                "seconds_forward": runs["forward"].seconds,
                "seconds_others": span([runs[n].seconds for n in others], ".1f")})
    return out


#: the columns of :func:`variation_rows`
VARIATION_HEADER = ["noise", "model", "PSNR to target", "SSIM to target", "r to target",
                    "SSIM between models", "r between models"]


def variation_rows(images: Mapping, sets, names, targets, n_targets: int):
    """Chapter 6's variations: each set of noises, drawn by every model, against the targets
    (:func:`lib.metrics.variation_scores`).

    Args:
        images: ``{(noise set, model): images}``; sets, names: the sets and models, in order.
        targets: each image's target (tiled to the images' count).

    Returns:
        ``(rows, per_target, variation)``: the table's rows (:data:`VARIATION_HEADER`),
        ``{(set, model): SSIM per target}`` and ``{(set, model): {psnr, ssim, r, ssim_x, r_x}}``
        (``_x``: between models).
    """
    rows, per_target, variation = [], {}, {}
    for set_name in sets:
        sc = variation_scores({name: images[set_name, name] for name in names}, targets, n_targets)
        x = sc.between_models
        for name in names:
            m = sc.to_target[name]
            per_target[set_name, name] = sc.per_target_ssim[name]
            variation[set_name, name] = dict(psnr=m["psnr"], ssim=m["ssim"], r=m["pearson"],
                                             ssim_x=x["ssim"], r_x=x["pearson"])
            rows.append([set_name, name, m["psnr"], m["ssim"], m["pearson"], x["ssim"], x["pearson"]])
    return rows, per_target, variation


#: the columns of :func:`edit_rows`
EDIT_HEADER = ["model", "method", "strength", "effective", "SSIM to input", "PSNR to input",
               "target share", "margin"]


def edit_rows(edited: Mapping, prefs: Mapping, inputs, strengths, steps: Mapping, names,
              methods):
    """Chapter 6's edits: per model, method and strength, the effective strength (whole grid
    steps are redone, :func:`lib.sampling.redo_steps`), the structure kept (SSIM and PSNR to
    the input) and the edit achieved (the share the diffusion classifier reads as the target,
    and the mean log-error margin).

    Args:
        edited: ``{(model, method): images (strengths, N, 3, S, S)}``; prefs: ``{(model,
            method): [ClassPreference per strength]}``; inputs: the input images ``(N, 3, S, S)``.
        steps: ``{model: DDIM steps}``.

    Returns:
        ``(rows, curves, table)``: the rows (:data:`EDIT_HEADER`), ``{(model, method): (SSIMs,
        target shares, margins)}`` over the strengths, ``{(model, method, strength):
        {effective, ssim, psnr, share}}``.
    """
    rows, curves, table = [], {}, {}
    for name in names:
        for method in methods:
            ss, rate, margin = [], [], []
            for i, s in enumerate(strengths):
                sim = similarity(edited[name, method][i], inputs).mean()
                pr = prefs[name, method][i]
                ss.append(sim["ssim"]), rate.append(pr.target_rate), margin.append(pr.margin.mean())
                effective = redo_steps(s, steps[name]) / steps[name]
                rows.append([name, method, s, effective, sim["ssim"], sim["psnr"], pr.target_rate,
                             pr.margin.mean()])
                table[name, method, s] = dict(effective=effective, ssim=sim["ssim"],
                                              psnr=sim["psnr"], share=pr.target_rate)
            curves[name, method] = (ss, rate, margin)
    return rows, curves, table


def applications_numbers(names, per_target: Mapping, variation: Mapping, edit_table: Mapping,
                         judged: list, strengths) -> dict:
    """Chapter 6's prose numbers.

    Args:
        names: the models, in order (the prose names the first two as ``m0``, ``m1``).
        per_target, variation: from :func:`variation_rows`; edit_table: from :func:`edit_rows`.
        judged: each model's share of right labels from the diffusion classifier.
        strengths: the edit strengths (the prose reads the two largest).
    """
    names, V, E = list(names), variation, edit_table
    beats = {n: improvement(per_target["annealed", n], per_target["random", n]) for n in names}
    out = per_model(names, lambda n: {"ssim_annealed": beats[n].mean_a,
                                      "ssim_random": beats[n].mean_b, "higher": beats[n].n_higher},
                    slots=2)
    out.update({"wilcoxon_p": span([b.p_value for b in beats.values()], ".3f"),
                "r_annealed": span([V["annealed", n]["r"] for n in names]),
                "r_random": span([V["random", n]["r"] for n in names]),
                "psnr_annealed": span([V["annealed", n]["psnr"] for n in names], ".1f"),
                "psnr_random": span([V["random", n]["psnr"] for n in names], ".1f")})
    for which in ("annealed", "random"):
        out.update({f"x_ssim_{which}": V[which, names[0]]["ssim_x"],
                    f"x_r_{which}": V[which, names[0]]["r_x"]})
    own = [V[f"inversion by {n}", n] for n in names]
    other = [V[f"inversion by {a}", b] for a in names for b in names if a != b]
    s1, s2 = sorted(strengths)[-1], sorted(strengths)[-2]  # the two largest strengths
    out.update({"inv_own_ssim": span([v["ssim"] for v in own]),
                "inv_own_psnr": span([v["psnr"] for v in own], ".0f"),
                "inv_other_ssim": span([v["ssim"] for v in other]),
                "annealed_ssim": span([V["annealed", n]["ssim"] for n in names]),
                "judge": span(judged, ".0%"), "s1": s1, "s2": s2,
                "s2_effective": span([E[n, "sdedit", s2]["effective"] for n in names])})
    for method, tag in (("sdedit", "plain"), ("sdedit-annealed", "annealed"),
                        ("ddim-inversion", "inv")):
        for s, k in ((s1, "s1"), (s2, "s2")):
            out[f"{tag}_{k}_ssim"] = span([E[n, method, s]["ssim"] for n in names])
            out[f"{tag}_{k}_share"] = span([E[n, method, s]["share"] for n in names], ".0f",
                                           scale=100)
    return out


def appendix_numbers(cards: Mapping) -> dict:
    """The appendix's prose numbers from the embedded models' cards (committed with their
    weights: training, loss curve and sample quality against the training crops)."""
    cards = dict(cards)
    first = next(iter(cards.values()))
    vs_train = {name: c["quality"]["samples_vs_train"] for name, c in cards.items()}
    floor = first["quality"]["gaussian_vs_train"]
    return {
        "bar_slope": QUALITY_BAR["slope_abs_diff"], "bar_channel": QUALITY_BAR["channel_rel_diff"],
        "bar_cov": QUALITY_BAR["cov_rel_frobenius"],
        "card_n": first["quality"]["n"], "card_steps": first["quality"]["ddim_steps"],
        "train_minutes": span([c["train_seconds"] / 60 for c in cards.values()], ".0f"),
        "train_hardware": Words(" and ".join(sorted({s["hardware"] for c in cards.values()
                                                     for s in c["segments"]}))),
        "train_steps": span([c["steps"] for c in cards.values()], ",.0f"),
        "train_batch": span([c["train_config"]["batch_size"] for c in cards.values()], ".0f"),
        "final_loss": span([c["loss_curve"][-1][1] for c in cards.values()], ".4f"),
        "std_low": span([max(q["std_rel_diff"]) for q in vs_train.values()], ".0f", scale=100),
        "cov_dist": span([q["cov_rel_frobenius"] for q in vs_train.values()]),
        "slopes": Words(", ".join(f"{name} {q['slope_abs_diff']:.2f}" for name, q in vs_train.items())),
        "floor_std": 100 * max(floor["std_rel_diff"]), "floor_cov": floor["cov_rel_frobenius"],
        "floor_slope": floor["slope_abs_diff"],
        "unet_slope": span([q["slope_abs_diff"] for q in vs_train.values()]),
        "params": span([c["parameters"] / 1e6 for c in cards.values()], ".1f"),
    }
