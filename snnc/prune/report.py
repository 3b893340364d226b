"""The JSON report of a pruning run (what ``snnc prune`` writes next to the model): before/after
accuracy, SynOps, channel and connection counts, kept channels per layer, per-layer rows,
per-channel activity, regeneration (per event, and how many regenerated units survive to the end),
the epoch history and the settings. ``snnc prune`` adds the compiled neurocores."""

from __future__ import annotations

from snnc.nn.blocks import Dense
from snnc.nn.zoo import SpikingNet
from snnc.prune import masks as M
from snnc.prune.config import PruneConfig
from snnc.prune.resume import Progress


def layer_rows(model: SpikingNet, before: dict, after: dict) -> list[dict]:
    """One row per conv/dense block with a neuron: kept channels and connections, spike rate and
    SynOps before and after (``before``/``after``: :func:`snnc.prune.synops.measure` results)."""
    rows = []
    chan = {id(b) for _, b in M.channel_targets(model)}
    for name, b in M.connection_targets(model):
        em = M.effective_weight_mask(b)
        rows.append(
            {
                "layer": name,
                "kind": b.kind,
                "channels_kept": int(b.channel_mask.sum()),
                "channels": b.out_channels,
                "channel_pruned_by_method": id(b) in chan,
                "connections_kept": int(em.sum()),
                "connections": b.weight.numel(),
                "spike_rate_before": before["layers"].get(name, {}).get("spike_rate"),
                "spike_rate_after": after["layers"].get(name, {}).get("spike_rate"),
                "synops_before": before["layers"].get(name, {}).get("synops"),
                "synops_after": after["layers"].get(name, {}).get("synops"),
            }
        )
    return rows


def regeneration_summary(model: SpikingNet, unit: str, history: list[dict]) -> dict:
    """Regenerations per prune event and their survival: ``units`` distinct units that came back
    at some event, ``survived`` those active in the final model (a channel by its ``channel_mask``,
    a connection by its effective weight mask, ``[layer, flat index]``)."""
    per_event = [
        {"epoch": h["epoch"], "budget": h.get("regen_budget"), "regenerated": h.get("regenerated", 0)}
        for h in history
        if h.get("target") is not None
    ]
    units = {(layer, int(i)) for h in history for layer, i in h.get("revived", [])}
    survived = 0
    for layer, i in units:
        block = model.get_submodule(layer)
        mask = block.channel_mask if unit == "conv channels" else M.effective_weight_mask(block).flatten()
        survived += bool(0 <= i < mask.numel() and mask[i] > 0)
    return {
        "per_event": per_event,
        "total": sum(e["regenerated"] for e in per_event),
        "units": len(units),
        "survived": survived,
        "survival": survived / len(units) if units else None,
    }


def prune_report(
    cfg: PruneConfig,
    unit: str,
    model: SpikingNet,
    progress: Progress,
    accuracy_after: float,
    after_ops: dict,
    resumed: bool,
    world: int,
    digests: list[str],
) -> dict:
    """The report of a finished run. ``unit``: the method's ``unit`` (``sparsity_unit``);
    ``after_ops``: SynOps of the pruned model; ``digests``: one per rank."""
    kept, total = M.channel_counts(model)
    ckept, ctotal = M.connection_counts(model)
    fkept, ftotal = M.connection_counts(model, (Dense,))
    before = progress.before
    before_ops = before["synops"]
    layers = layer_rows(model, before_ops, after_ops)
    report = {
        "method": cfg.method,
        "target_sparsity": cfg.sparsity,
        "sparsity_unit": unit,
        "channel_sparsity": 1 - kept / total if total else 0.0,
        "connection_sparsity": 1 - ckept / ctotal if ctotal else 0.0,
        "fc_connection_sparsity": 1 - fkept / ftotal if ftotal else 0.0,
        "channels": {"kept": kept, "total": total},
        "connections": {"kept": ckept, "total": ctotal},
        "accuracy_before": before["accuracy"],
        "accuracy_after": accuracy_after,
        "synops_before": before_ops["total"],
        "synops_after": after_ops["total"],
        "synops_reduction": before_ops["total"] / after_ops["total"] if after_ops["total"] else None,
        "params_before": before["connections"][0],
        "params_after": ckept,
        "scoring_seconds": progress.scoring_seconds,
        "train_seconds": progress.train_seconds,
        "scoring_overhead": progress.scoring_seconds / progress.train_seconds
        if progress.train_seconds
        else None,
        "regenerated_total": progress.regenerated_total,
        "regeneration": regeneration_summary(model, unit, progress.history),
        "allocation": cfg.allocation_used,
        "objective": cfg.objective,
        "kept_per_layer": {r["layer"]: r["channels_kept"] for r in layers if r["channel_pruned_by_method"]},
        "distill_weight": cfg.distill_weight,
        "resumed": resumed,
        "world_size": world,
        "rank_digests": digests,
        "layers": layers,
        "activity": {
            "before": {k: v.get("channel_rates") for k, v in before_ops["layers"].items()},
            "after": {k: v.get("channel_rates") for k, v in after_ops["layers"].items()},
        },
        "history": progress.history,
        "config": cfg.to_dict(),
    }
    report["summary"] = {
        "method": cfg.method,
        "channels_kept": kept,
        "channels_total": total,
        "channel_sparsity": report["channel_sparsity"],
        "connection_sparsity": report["connection_sparsity"],
        "accuracy_before": report["accuracy_before"],
        "accuracy_after": accuracy_after,
        "synops_before": report["synops_before"],
        "synops_after": report["synops_after"],
        "synops_reduction": report["synops_reduction"],
        "scoring_seconds": progress.scoring_seconds,
        "kept_per_layer": report["kept_per_layer"],
        "regenerated": report["regeneration"]["total"],
        "regenerated_survived": report["regeneration"]["survived"],
    }
    return report
