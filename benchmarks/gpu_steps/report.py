"""``benchmarks/gpu.py``'s steps folded into one report: a section per figure, its target and verdict.

A step's record (``benchmarks.gpu_steps.common.Record``) plus how it ended (status, why, wall and
budget seconds) becomes a section; figures that need two steps (eegfm against CBraMod, the loader
against the step) are computed here. Every section has ``status``, ``dry_run``, ``target``,
``met`` (None where not judged: a dry run, a figure not measured) and, where it is not ``ok``,
``why``. Targets: eegfm ``base`` windows/s >= 2x CBraMod's at equal batch; MFU >= 15 % at batch
1024; the loader >= 10x the step; TensorRT FP16 batch 1 <= 1 ms and within 1e-2 of ONNX Runtime;
Horovod with NCCL runs.
"""

from __future__ import annotations

from typing import Any

from benchmarks.gpu_steps.common import verdict

MFU_TARGET, MFU_BATCH, PEER_RATIO, LOADER_TIMES = 0.15, 1024, 2.0, 10.0
ENDING = ("status", "why", "wall_s", "budget_s", "log_tail")


def _ending(step: dict[str, Any]) -> dict[str, Any]:
    return {k: step[k] for k in ENDING if k in step}


def _section(status: str, dry_run: bool, target: str, met: bool | None, plan: dict, **rest: Any) -> dict[str, Any]:
    section = {"status": status, "dry_run": dry_run, "target": target, "met": None if dry_run else met}
    if dry_run:
        section["met_why"] = "dry run: CPU shapes check the code; targets are judged on a GPU only"
    return {**section, "gpu_plan": plan, **rest}


def _measured(runs: list[dict]) -> list[dict]:
    return [run for run in runs if "error" not in run]


def software_stack(step: dict[str, Any], context: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    body = {k: v for k, v in step.items() if k not in ENDING}
    section = _section(
        step["status"], dry_run, "record every difference from requirements/lock.txt", None, {}, **context, **body
    )
    section.pop("gpu_plan")
    return {**section, **_ending(step)}


def pretrain(eager: dict, compiled: dict, dry_run: bool, plan: dict) -> dict[str, Any]:
    runs = eager.get("runs", []) + compiled.get("runs", [])
    measured = _measured(runs)
    at_target = [run for run in measured if run["batch"] == MFU_BATCH and run.get("mfu") is not None]
    best_at_target = max(at_target, key=lambda run: run["mfu"]) if at_target else None
    met = None if best_at_target is None else best_at_target["mfu"] >= MFU_TARGET
    statuses = {eager.get("status"), compiled.get("status")}
    status = "ok" if statuses <= {"ok"} else "partial" if measured else eager.get("status", "failed")
    if dry_run and eager.get("status") == "ok":
        status = "ok"  # the compiled runs are GPU-only, by design
    info = {k: eager.get(k, compiled.get(k)) for k in ("device", "bf16_peak_flops", "overrides", "parameters")}
    return _section(
        status,
        dry_run,
        f"MFU >= {MFU_TARGET:.0%} at batch {MFU_BATCH} (best of eager and compiled)",
        met,
        plan,
        **info,
        runs=runs,
        best=max(measured, key=lambda run: run["windows_per_s"]) if measured else None,
        mfu_at_target_batch=None if best_at_target is None else best_at_target["mfu"],
        steps={"eager": _ending(eager), "compiled": _ending(compiled)},
        **({"why": eager.get("why") or compiled.get("why")} if status != "ok" else {}),
    )


def _by_batch(runs: list[dict], **match: Any) -> dict[int, float]:
    rates: dict[int, float] = {}
    for run in _measured(runs):
        if all(run.get(k) == v for k, v in match.items()):
            rates[run["batch"]] = max(rates.get(run["batch"], 0.0), run["windows_per_s"])
    return rates


def peers(step: dict, eegfm_runs: list[dict], dry_run: bool, plan: dict) -> dict[str, Any]:
    """CBraMod and LaBraM against eegfm at each batch both ran: eager against eager (the target),
    and eegfm's best (compiled where faster) against the peers' eager."""
    eager, best = _by_batch(eegfm_runs, compile=False), _by_batch(eegfm_runs)
    cbramod, labram = (_by_batch(step.get("runs", []), model=m) for m in ("CBraMod", "LaBraM-base"))
    rows = []
    for batch in sorted(set(eager) & set(cbramod)):
        row = {"batch": batch, "eegfm_eager": eager[batch], "eegfm_best": best[batch], "cbramod": cbramod[batch]}
        row["eegfm_eager_over_cbramod"] = round(eager[batch] / cbramod[batch], 2)
        row["eegfm_best_over_cbramod"] = round(best[batch] / cbramod[batch], 2)
        if batch in labram:
            row["labram"] = labram[batch]
            row["eegfm_eager_over_labram"] = round(eager[batch] / labram[batch], 2)
        rows.append(row)
    met = verdict([row["eegfm_eager_over_cbramod"] >= PEER_RATIO for row in rows]) if rows else None
    body = {k: v for k, v in step.items() if k not in ENDING}
    return _section(
        step["status"],
        dry_run,
        f"eegfm base windows/s >= {PEER_RATIO:g}x CBraMod's at equal batch (both eager)",
        met,
        plan,
        **body,
        comparison=rows,
    ) | _ending(step)


def loader(step: dict, eegfm_runs: list[dict], dry_run: bool, plan: dict) -> dict[str, Any]:
    # eegfm is importable only once gpu.py has linked the repository (a machine without it installed).
    from benchmarks.train import loader_vs_gpu

    body = {k: v for k, v in step.items() if k not in ENDING}
    measured = _measured(eegfm_runs)
    against = None
    if "loader" in step and measured:
        workers = step["loader"]["workers"]
        rates = {"loader": {f"workers={workers},float16": {"windows_per_s": step["loader"]["windows_per_s"]}}}
        against = loader_vs_gpu(rates, {"runs": measured}, workers)
    met = None if against is None else against["times_hungriest_step"] >= LOADER_TIMES
    return _section(
        step["status"],
        dry_run,
        f"loader windows/s >= {LOADER_TIMES:g}x the hungriest pretraining step's",
        met,
        plan,
        **body,
        against_steps=against,
    ) | _ending(step)


def judged(step: dict, target: str, dry_run: bool, plan: dict) -> dict[str, Any]:
    """A section whose step judged its own targets (``targets``: a list with ``met`` each)."""
    body = {k: v for k, v in step.items() if k not in ENDING}
    targets = step.get("targets", [])
    met = verdict([t["met"] for t in targets]) if targets else None
    return _section(step["status"], dry_run, target, met, plan, **body) | _ending(step)


def summary(sections: dict[str, dict]) -> list[dict[str, Any]]:
    """One line per section: status, target, verdict and why."""
    return [
        {
            "section": name,
            "status": section["status"],
            "target": section["target"],
            "met": section["met"],
            **({"why": section["why"]} if section.get("why") else {}),
        }
        for name, section in sections.items()
    ]
