"""The run folder (`--workdir`): layout, config hash, resume-or-refuse, report.json.

Layout of a run folder:

    config.json            the validated config, its hash (`config_hash`)
    versions.json          Python / TensorFlow / tf_keras / Keras 3 / tfmot / eb_tf versions
    report.json            schema_version, phases {search, draw, retrain, export},
                           eb {ratio: {epoch, found}}, ticket {ratio: {params, flops,
                           per_layer, ...}}, final {name: {validation, test, model}}
    search/                per-epoch checkpoint (ckpt/), EarlyBird files (eb/),
                           masks of every epoch (masks_p0.5.npz), init weights
    tickets/p0.5/          the drawn ticket: model.keras, mask.npz, meta.json
    retrain/p0.5/          per-epoch checkpoint (ckpt/), final.keras
    tb/                    TensorBoard logs

Opening an existing folder with the same config hash resumes it; another config is a
`ValueError` naming every differing field, unless the folder holds no completed epoch
(a start that failed, e.g. on a missing dataset): then it starts again with the new
config. Every file is written atomically; opening a folder deletes the staging folders
(`.tmp-*`, `.old-*`) a killed run left behind, so one run folder must be used by one
process at a time: `eb_tf.pipeline.run` holds its lock (`eb_tf.pipeline.run_lock`).

Example:

    from eb_tf.pipeline import run_dir
    rd = run_dir.RunDir.open("/tmp/run", run_cfg)     # creates or resumes
    rd.update_report(eb={"0.5": {"epoch": 12, "found": True}})
"""
import dataclasses
import importlib.metadata
import os
import platform
import shutil
import sys
from typing import Optional

from eb_tf import io_utils
from eb_tf.pipeline import config as eb_config
from eb_tf.version import __version__

__all__ = ["RunDir", "SCHEMA_VERSION", "ratio_key", "ratio_name", "weights_name", "versions", "summary_table", "totals"]

SCHEMA_VERSION = 1


def ratio_key(ratio: float) -> str:
    """'p0.5' for 0.5: the folder name of a ratio's ticket and retrain."""
    return f"p{ratio:g}"


def ratio_name(ratio: float) -> str:
    """'0.5' for 0.5: the key of a ratio in the report's `eb`, `ticket` and `final`."""
    return f"{ratio:g}"


def weights_name(stem: str, keras_version: int = 2) -> str:
    """The weights file of `stem` for a run's Keras: 'weights_e0.h5' (tf_keras), or
    'weights_e0.weights.h5' (Keras 3, whose `save_weights` needs that suffix; the name
    `eb_tf.sparsity.early_bird.weights_file` gives a ticket's weights too)."""
    return f"{stem}.weights.h5" if keras_version == 3 else f"{stem}.h5"


def versions() -> dict:
    """Versions of everything that changes numbers, for versions.json."""
    import numpy as np

    from eb_tf.compat import keras, keras3, tf
    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "numpy": np.__version__, "tensorflow": tf.__version__,
           "tf_keras": keras.__version__, "keras": keras3.__version__}
    try:  # read from the installed metadata, not imported: tfmot sets TF_USE_LEGACY_KERAS
        out["tensorflow_model_optimization"] = importlib.metadata.version(
            "tensorflow-model-optimization")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a declared dependency
        out["tensorflow_model_optimization"] = None
    out["eb_tf"] = __version__
    return out


class RunDir:
    """Paths and report of one run folder; use `RunDir.open` (or `RunDir.existing`)."""

    def __init__(self, path: str, cfg: eb_config.RunConfig):
        self.path = os.path.abspath(path)
        self.cfg = cfg
        self.hash = eb_config.config_hash(cfg)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str, cfg: eb_config.RunConfig) -> "RunDir":
        """Creates the run folder, or resumes it if its config hash is the same.

        A folder with another config but no completed epoch (see `has_progress`) is
        cleared and started again with `cfg`.

        Raises:
          ValueError: the folder holds another config and completed epochs (names the
            differing fields), or the path exists and is not a folder.
        """
        if not str(path).strip():
            raise ValueError("--workdir is empty: name a run folder, e.g. --workdir=/tmp/eb_run")
        path = os.path.abspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"--workdir {path!r} exists and is not a folder")
        rd = cls(path, cfg)
        rd._remove_stale_temporaries()
        config_path = rd.file("config.json")
        if os.path.exists(config_path):
            saved = io_utils.read_json(config_path)
            if saved.get("config_hash") != rd.hash and not _same_with_new_defaults(saved, rd):
                if rd.has_progress():
                    raise ValueError(_difference_message(path, saved.get("config", {}), cfg))
                rd._clear_failed_start()
                return cls.open(path, cfg)
            if saved.get("config") != cfg.to_dict():  # UNHASHED_FIELDS or new fields
                io_utils.atomic_write_json(config_path, {"config_hash": rd.hash,
                                                         "config": cfg.to_dict()})
        else:
            os.makedirs(path, exist_ok=True)
            io_utils.atomic_write_json(config_path, {"config_hash": rd.hash,
                                                     "config": cfg.to_dict()})
            io_utils.atomic_write_json(rd.file("versions.json"), versions())
        if not os.path.exists(rd.file("report.json")):
            io_utils.atomic_write_json(rd.file("report.json"), rd._empty_report())
        return rd

    @classmethod
    def existing(cls, path: str, overrides: Optional[dict] = None) -> "RunDir":
        """Opens a run folder with the config it was created with (phase binaries)."""
        config_path = os.path.join(os.path.abspath(path), "config.json")
        if not os.path.exists(config_path):
            raise ValueError(f"--workdir {path!r} is not a run folder (no config.json); run "
                             "eb_search (or eb_train) there first")
        values = dict(io_utils.read_json(config_path)["config"])
        values.update(overrides or {})
        return cls.open(path, eb_config.from_config_dict(values))

    def has_progress(self) -> bool:
        """True once any phase completed an epoch (or finished): the folder is a real run."""
        if os.path.exists(self.file("report.json")) and self.report().get("phases"):
            return True
        return any(os.path.exists(os.path.join(parent, "state.json"))  # epoch checkpoints
                   for phase in ("search", "retrain", "train")
                   for parent, _, _ in os.walk(self.file(phase)))

    def _clear_failed_start(self):
        """Removes what a start that completed no epoch wrote (identity, init weights)."""
        for name in ("config.json", "versions.json", "report.json", "report.md"):
            if os.path.exists(self.file(name)):
                os.remove(self.file(name))
        for name in ("search", "tickets", "retrain", "train", "tb", "export", "report"):
            shutil.rmtree(self.file(name), ignore_errors=True)

    def _remove_stale_temporaries(self):
        """Deletes the staging folders a killed run left behind (io_utils' .tmp-/.old-)."""
        for parent, dirs, _ in os.walk(self.path):
            for name in list(dirs):
                if name.startswith((".tmp-", ".old-")):
                    shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                    dirs.remove(name)

    def _empty_report(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "config_hash": self.hash,
                "method": self.cfg.method, "phases": {}, "eb": {}, "ticket": {},
                "final": {}}

    # ------------------------------------------------------------------ paths
    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def search_dir(self, *parts: str) -> str:
        return self.file("search", *parts)

    def ticket_dir(self, ratio: float, epoch: Optional[int] = None) -> str:
        name = ratio_key(ratio) + ("" if epoch is None else f"_e{epoch}")
        return self.file("tickets", name)

    def retrain_dir(self, ratio: float, *parts: str) -> str:
        return self.file("retrain", ratio_key(ratio), *parts)

    def tb_dir(self, name: str) -> Optional[str]:
        return self.file("tb", name) if self.cfg.tensorboard else None

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        return io_utils.read_json(self.file("report.json"))

    def update_report(self, **sections) -> dict:
        """Merges `sections` (dicts merged one level deep) into report.json atomically."""
        report = self.report()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(report.get(key), dict):
                report[key] = {**report[key], **value}
            else:
                report[key] = value
        io_utils.atomic_write_json(self.file("report.json"), report)
        return report

    def phase_done(self, phase: str) -> bool:
        return bool(self.report().get("phases", {}).get(phase, {}).get("done"))


def _same_with_new_defaults(saved: dict, rd: RunDir) -> bool:
    """True if the folder's config equals ours once fields added to RunConfig since the
    folder was written take their defaults (an older eb_tf wrote it)."""
    known = {f.name for f in dataclasses.fields(eb_config.RunConfig)}
    values = {k: v for k, v in saved.get("config", {}).items() if k in known}
    if set(saved.get("config", {})) - known:
        return False  # a field this eb_tf no longer has: not the same run
    try:
        return eb_config.config_hash(eb_config.from_config_dict(values)) == rd.hash
    except ValueError:
        return False


def _difference_message(path: str, saved: dict, cfg: eb_config.RunConfig) -> str:
    now = cfg.to_dict()
    saved = {**eb_config.RunConfig().to_dict(), **saved}  # fields added since: defaults
    diffs = [f"config.{k}: {saved.get(k)!r} in the folder vs {now.get(k)!r} now"
             for k in sorted(set(saved) | set(now))
             if k not in eb_config.UNHASHED_FIELDS and saved.get(k) != now.get(k)]
    return (f"--workdir {path!r} holds a run with another config ({'; '.join(diffs)}). "
            "Use a new --workdir, or the folder's own config to resume it.")


def totals(report: dict) -> dict:
    """Epochs, seconds and training FLOPs summed over the report's phases."""
    phases = [p for p in report.get("phases", {}).values() if isinstance(p, dict)]
    return {name: round(sum(p.get(name, 0) or 0 for p in phases), 3) if name == "seconds"
            else int(sum(p.get(name, 0) or 0 for p in phases))
            for name in ("epochs", "seconds", "flops")}


def summary_table(report: dict, report_md: Optional[str] = None) -> str:
    """The terminal summary: one row per phase, one per ticket/final model, the warnings.

    `report_md`: the run's report.md, named on the last line.
    """
    lines = [f"EB Train summary (method={report.get('method')}, "
             f"config {report.get('config_hash')})",
             f"{'phase':<8} {'epochs':>6} {'seconds':>9} {'train FLOPs':>12} precision"]
    for name in ("search", "draw", "retrain", "export"):
        p = report.get("phases", {}).get(name)
        if p and "seconds" in p:
            lines.append(f"{name:<8} {p.get('epochs', 0):>6} {p['seconds']:>9.1f} "
                         f"{p.get('flops', 0):>12.3g} {p.get('precision', '-')}")
    total = totals(report)
    lines.append(f"{'total':<8} {total['epochs']:>6} {total['seconds']:>9.1f} "
                 f"{total['flops']:>12.3g}")
    lines.append(f"{'model':<10} {'EB epoch':>8} {'found':>5} {'params':>10} {'FLOPs':>12} "
                 f"{'val acc':>8} {'test acc':>8}")
    for name, final in report.get("final", {}).items():
        eb_entry = report.get("eb", {}).get(name, {})
        val = final.get("validation")
        lines.append(f"{name:<10} {str(eb_entry.get('epoch', '-')):>8} "
                     f"{str(eb_entry.get('found', '-')):>5} {final.get('params', 0):>10,} "
                     f"{final.get('flops', 0):>12,} "
                     f"{'-' if val is None else f'{val:.4f}':>8} {final['test']:>8.4f}")
    lines += _vs_dense_lines(report.get("vs_dense"))
    found = report.get("warnings") or []
    if found:  # eb_tf.pipeline.health: results that look useless
        lines.append(f"!!! {len(found)} WARNING(S): this result may be useless "
                     "(report.json 'warnings'; --config.strict=True makes them errors)")
        lines += [f"!!! {w}" for w in found]
    if report_md:
        lines.append(f"report with plots: {report_md}")
    return "\n".join(lines)


def _x(value, spec=".3f"):
    return "-" if value is None else f"{value:{spec}}x"


def _vs_dense_lines(section: Optional[dict]) -> list:
    """The summary's comparison with dense training of the same T (`eb_tf.pipeline.savings`)."""
    if not section or not section.get("by_ratio"):
        return []
    dense, label = section["dense"], section["label"]
    lines = [f"vs dense training of the same T = {dense['epochs']} epochs (the search's net "
             "and data; report.json 'vs_dense'):"]
    speed = section.get("speed") or {}
    for key, row in section["by_ratio"].items():
        train, ticket, acc = row["train"], row["ticket"], row["accuracy"]
        saved = None if row["flops_ratio"] is None else 100 * (1.0 - row["flops_ratio"])
        verdict = "-" if saved is None else \
            f"saves {saved:.1f}%" if saved >= 0 else f"costs {-saved:.1f}% more"
        lines.append(f"p={key:<5} training FLOPs {train['flops']:.3g} vs {dense['flops']:.3g} "
                     f"= {_x(row['flops_ratio'])} ({label} {verdict})")
        lines.append(f"{'':7} wall-clock {train['seconds']:.1f} s vs ~{dense['seconds']:.1f} s "
                     f"= {_x(row['seconds_ratio'])} (dense estimated: {dense['measured_epochs']} "
                     f"measured search epochs + {dense['extrapolated_epochs']} at their median "
                     f"{dense['median_epoch_seconds']:.2f} s)")
        lines.append(f"{'':7} ticket params {ticket['params']:,} vs {dense['params'] or 0:,} "
                     f"({_x(ticket['params_ratio'])}), FLOPs/sample {ticket['flops_per_sample']:,}"
                     f" vs {dense['forward_flops_per_sample']:,} ({_x(ticket['flops_ratio'])})")
        mine, at_draw = acc["ticket"], acc["dense_at_draw"]
        lines.append(f"{'':7} accuracy: ticket val {_acc(mine['validation'])}, test "
                     f"{_acc(mine['test'])}; dense net at search epoch {at_draw['epoch']}: val "
                     f"{_acc(at_draw['validation'])} (no dense model trained to T here)")
        if row.get("train_step_speedup") is not None:
            lines.append(f"{'':7} ticket vs dense: train step {_speed(row['train_step_speedup'])}"
                         f" (batch {speed['batch']}, {speed['device']}), batch-1 inference "
                         f"{_speed(row['inference_batch1_speedup'])}")
    if speed.get("seconds") is not None:
        lines.append(f"{'':7} (speed measured once in {speed['seconds']:.1f} s, not training)")
    elif speed.get("skipped"):
        lines.append(f"{'':7} (speed not measured: {speed['skipped']})")
    return lines


def _speed(speedup: float) -> str:
    """'1.26x faster' or, below 1, '1.41x slower' (dense time / ticket time)."""
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def _acc(value) -> str:
    return "-" if value is None else f"{value:.4f}"
