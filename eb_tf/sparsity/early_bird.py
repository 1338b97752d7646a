"""The Early-Bird callback: find the epoch at which the pruning mask stops changing.

After every epoch t (counted from 1) the callback draws the network-slimming mask for
each tracked pruning ratio from the BN gammas and keeps the last `window` of them
(FIFO). The Early-Bird ticket for ratio r emerges at the first t >= window at which the
newest mask is within `threshold` (normalised Hamming distance) of every older mask in
the window (You et al., ICLR 2020, and their reference code).

Example:

    eb = eb_tf.EarlyBird(ratios=(0.3, 0.5, 0.7), save_dir="run/tickets")
    model.fit(train, epochs=160, callbacks=[eb])
    eb.found_epochs          # {0.3: 12, 0.5: 14, 0.7: 19}
    eb.tickets[0.5]          # {"bn1": array([True, False, ...]), ...}
"""
import os
import warnings
from typing import Dict, Iterable, List, Optional

import numpy as np

from eb_tf import io_utils
from eb_tf.compat import is_keras3, keras
from eb_tf.sparsity import batchnorm
from eb_tf.sparsity import masks as masks_lib

__all__ = ["EarlyBird", "weights_file"]

STATE_VERSION = 1


def weights_file(model) -> str:
    """The ticket's weights file name for `model`: `weights.h5` (tf_keras), or
    `weights.weights.h5` for a Keras 3 model (whose `save_weights` needs that suffix).

    Example:

        model.load_weights(os.path.join(save_dir, "p0.5", weights_file(model)))
    """
    return "weights.weights.h5" if is_keras3(model) else "weights.h5"


def _ratio_dir(ratio: float) -> str:
    return f"p{ratio:g}"


class EarlyBird(keras.callbacks.Callback):
    """Tracks channel masks per epoch and reports (and saves) the Early-Bird tickets.

    Attributes:
      found_epochs: {ratio: epoch t at which the ticket emerged, or None}.
      tickets: {ratio: the mask drawn at t} (only found ratios).
      distances: {ratio: [per epoch: max distance of the newest mask to the older ones
        in the window, or None until the window is full]}.
      epochs: the epochs (from 1) seen so far, aligned with `distances`.
      latest_masks: {ratio: the mask drawn at the last epoch}.
      epoch_masks: {t: {ratio: mask}} for the epochs in `save_epochs`.

    Each epoch `logs` gains `eb_distance_p{r:g}` (NaN until the window is full), so put
    this callback before TensorBoard/CSVLogger in `callbacks` for them to record it.
    It works in the `fit` of tf_keras and of Keras 3 models alike (a Keras 3 ticket's
    weights are saved as `weights.weights.h5`, see `weights_file`).

    Example:
      >>> eb = eb_tf.EarlyBird(ratios=(0.5,), threshold=0.1, window=5)
      >>> model.fit(x, y, epochs=160, callbacks=[eb])
      >>> ticket = eb.tickets[0.5]
    """

    def __init__(self, ratios: Iterable[float] = (0.5,), threshold: float = 0.1,
                 window: int = 5, scope: str = "global", min_channels: int = 1,
                 exclude: Optional[Iterable[str]] = None, stop_training: bool = True,
                 save_dir: Optional[str] = None, save_epochs: Iterable[int] = (),
                 verbose: int = 0):
        """Args:
          ratios: pruning ratios to track, each in (0, 1).
          threshold: the ticket emerges when every distance in the window is <= this
            (> 0; paper: 0.1).
          window: how many recent masks to compare (>= 2; paper: 5).
          scope: "global" (one |gamma| threshold over all BN layers) or "layer".
          min_channels: see `masks_from_gammas`.
          exclude: BN keys or fnmatch patterns never pruned.
          stop_training: stop `fit` once every ratio has its ticket; with False the
            run goes on and masks, distances and `save_epochs` keep being recorded.
          save_dir: if set, the ticket for r is written at its epoch t to
            `save_dir/p{r:g}/`: `mask.npz` (one bool array per BN key), `weights.h5`
            (the model's weights at t; `weights.weights.h5` for a Keras 3 model) and
            `meta.json` (its `weights_file` names it), atomically.
          save_epochs: epochs (from 1) at which to keep the masks of every ratio
            regardless of emergence (paper Fig. 1); in `epoch_masks`, and with
            `save_dir` also written to `save_dir/epoch{t}/p{r:g}/` like a ticket.
          verbose: 1 prints a line when a ticket emerges.
        """
        super().__init__()
        if isinstance(ratios, (int, float)):
            ratios = (ratios,)
        self.ratios = tuple(masks_lib.check_ratio(r, "ratios entry") for r in ratios)
        if not self.ratios or len({_ratio_dir(r) for r in self.ratios}) != len(self.ratios):
            raise ValueError(f"ratios must be a non-empty sequence of distinct values in "
                             f"(0, 1) (distinct as p{{r:g}} folder names), got {ratios!r}")
        try:
            self.threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}") from None
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1] (a mask distance), got {threshold!r}")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
            raise ValueError(f"window must be an int >= 2 (masks compared), got {window!r}")
        if scope not in masks_lib.SCOPES:
            raise ValueError(f"scope must be one of {masks_lib.SCOPES}, got {scope!r}")
        if isinstance(min_channels, bool) or not isinstance(min_channels, (int, np.integer)) \
                or min_channels < 0:
            raise ValueError(f"min_channels must be an int >= 0, got {min_channels!r}")
        self.window = int(window)
        self.scope = scope
        self.min_channels = int(min_channels)
        self.exclude = None if exclude is None else (
            [exclude] if isinstance(exclude, str) else list(exclude))
        self.stop_training = bool(stop_training)
        self.save_dir = None if save_dir is None else os.fspath(save_dir)
        self.save_epochs = sorted({self._check_epoch(e) for e in save_epochs})
        self.verbose = verbose
        self._state_set = False
        self._reset()

    @staticmethod
    def _check_epoch(epoch) -> int:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 1:
            raise ValueError(f"save_epochs entries must be epochs >= 1 (counted from 1), "
                             f"got {epoch!r}")
        return int(epoch)

    def _reset(self):
        self.found_epochs: Dict[float, Optional[int]] = {r: None for r in self.ratios}
        self.tickets: Dict[float, Dict[str, np.ndarray]] = {}
        self.distances: Dict[float, List[Optional[float]]] = {r: [] for r in self.ratios}
        self.epochs: List[int] = []
        self.latest_masks: Dict[float, Dict[str, np.ndarray]] = {}
        self.epoch_masks: Dict[int, Dict[float, Dict[str, np.ndarray]]] = {}
        self._keys: Optional[List[str]] = None
        self._window_masks: Dict[float, List[np.ndarray]] = {r: [] for r in self.ratios}

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        """Resets the state (unless `set_state` was called) and checks the model."""
        if self._state_set:
            self._state_set = False
        else:
            self._reset()
        # No candidate BN, NaN gammas or an `exclude` matching nothing: ValueError now.
        keys = masks_lib.select_keys(list(batchnorm.gammas(self.model, where="EarlyBird")),
                                     self.exclude)
        if not keys:
            raise ValueError(f"EarlyBird: exclude={self.exclude!r} leaves no BN layer to prune")

    def on_epoch_end(self, epoch, logs=None):
        """Draws the masks of epoch t = epoch + 1 and updates tickets and distances."""
        t = int(epoch) + 1
        if self.epochs and t <= self.epochs[-1]:
            warnings.warn(f"EarlyBird: epoch {t} is not after the last one seen "
                          f"({self.epochs[-1]}); call set_state only with the state of the "
                          "run being resumed.", stacklevel=2)
        drawn = masks_lib.draw_masks(batchnorm.gammas(self.model, where="EarlyBird"),
                                     self.ratios, self.scope, self.min_channels, self.exclude)
        self.epochs.append(t)
        for ratio in self.ratios:
            mask = drawn[ratio]
            dist = self._push(ratio, mask)
            self.latest_masks[ratio] = mask
            self.distances[ratio].append(dist)
            if logs is not None:
                logs[f"eb_distance_{_ratio_dir(ratio)}"] = float("nan") if dist is None \
                    else dist
            if self.found_epochs[ratio] is None and dist is not None and dist <= self.threshold:
                self.found_epochs[ratio] = t
                self.tickets[ratio] = mask
                if self.save_dir:
                    self._write(os.path.join(self.save_dir, _ratio_dir(ratio)), ratio, t,
                                mask, dist)
                if self.verbose:
                    print(f"EarlyBird: ticket for ratio {ratio:g} emerged at epoch {t} "
                          f"(max distance {dist:.4f} <= {self.threshold:g})")
            if t in self.save_epochs:
                self.epoch_masks.setdefault(t, {})[ratio] = mask
                if self.save_dir:
                    self._write(os.path.join(self.save_dir, f"epoch{t}", _ratio_dir(ratio)),
                                ratio, t, mask, dist)
        if self.stop_training and all(v is not None for v in self.found_epochs.values()):
            self.model.stop_training = True

    def _push(self, ratio: float, mask: Dict[str, np.ndarray]) -> Optional[float]:
        """FIFO of flat masks; the max distance newest-vs-older once the window is full."""
        keys = list(mask)
        if self._keys is None:
            self._keys = keys
        elif keys != self._keys:
            raise ValueError(f"EarlyBird: the model's BN layers changed during training "
                             f"(was {self._keys}, now {keys}); use a new callback.")
        flat = np.concatenate(list(mask.values()))
        fifo = self._window_masks[ratio]
        if fifo and fifo[-1].size != flat.size:
            raise ValueError(f"EarlyBird: the number of channels changed during training "
                             f"({fifo[-1].size} -> {flat.size}); use a new callback.")
        fifo.append(flat)
        del fifo[:-self.window]
        if len(fifo) < self.window:
            return None
        return float(max(np.count_nonzero(flat != old) for old in fifo[:-1])) / flat.size

    def _write(self, path, ratio, t, mask, dist):
        meta = {"ratio": ratio, "epoch": t, "distance": dist, "threshold": self.threshold,
                "window": self.window, "scope": self.scope, "min_channels": self.min_channels,
                "exclude": self.exclude, "ticket": self.found_epochs[ratio] == t,
                "num_channels": int(sum(m.size for m in mask.values())),
                "num_kept": int(sum(int(m.sum()) for m in mask.values())),
                "keys": list(mask), "distances": self.distances[ratio],
                "epochs": self.epochs, "weights_file": weights_file(self.model)}
        with io_utils.atomic_dir(path) as tmp:
            np.savez(os.path.join(tmp, "mask.npz"), **mask)
            self.model.save_weights(os.path.join(tmp, weights_file(self.model)))
            io_utils.atomic_write_json(os.path.join(tmp, "meta.json"), meta)

    # ------------------------------------------------------------------ state

    def _config(self) -> dict:
        return {"ratios": list(self.ratios), "window": self.window, "scope": self.scope,
                "min_channels": self.min_channels, "exclude": self.exclude}

    def get_state(self) -> dict:
        """The progress so far as a JSON-serialisable dict (for resuming a run)."""
        def enc(mask):
            return {k: "".join("1" if b else "0" for b in v.tolist()) for k, v in mask.items()}

        def flat_enc(flat):
            return "".join("1" if b else "0" for b in flat.tolist())
        return {
            "version": STATE_VERSION, "config": self._config(), "threshold": self.threshold,
            "keys": self._keys, "epochs": list(self.epochs),
            "per_ratio": [{"ratio": r, "found_epoch": self.found_epochs[r],
                           "ticket": enc(self.tickets[r]) if r in self.tickets else None,
                           "distances": list(self.distances[r]),
                           "window": [flat_enc(f) for f in self._window_masks[r]],
                           "latest": enc(self.latest_masks[r]) if r in self.latest_masks
                           else None}
                          for r in self.ratios],
            "epoch_masks": [{"epoch": t, "masks": [{"ratio": r, "mask": enc(m)}
                                                   for r, m in ms.items()]}
                            for t, ms in sorted(self.epoch_masks.items())],
        }

    def set_state(self, state: dict) -> None:
        """Restores `get_state()`; the next `on_train_begin` keeps it instead of resetting.

        The threshold may differ from the recorded one (it applies from now on).

        Raises:
          ValueError: a state of another version or of a callback with other ratios,
            window, scope, min_channels or exclude.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"EarlyBird.set_state expects a dict from get_state() with "
                             f"version {STATE_VERSION}, got "
                             f"{state.get('version') if isinstance(state, dict) else state!r}")
        ours, theirs = self._config(), state["config"]
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            raise ValueError("EarlyBird.set_state: the state was recorded with other settings "
                             "(field: (state, this callback)): " + str(diff))

        def dec(mask):
            return {k: np.array([c == "1" for c in v], dtype=bool) for k, v in mask.items()}
        self._reset()
        self._keys = state["keys"]
        self.epochs = [int(t) for t in state["epochs"]]
        for entry, ratio in zip(state["per_ratio"], self.ratios):
            self.found_epochs[ratio] = entry["found_epoch"]
            if entry["ticket"] is not None:
                self.tickets[ratio] = dec(entry["ticket"])
            if entry["latest"] is not None:
                self.latest_masks[ratio] = dec(entry["latest"])
            self.distances[ratio] = list(entry["distances"])
            self._window_masks[ratio] = [np.array([c == "1" for c in f], dtype=bool)
                                         for f in entry["window"]]
        for item in state["epoch_masks"]:
            self.epoch_masks[int(item["epoch"])] = {
                self.ratios[self.ratios.index(m["ratio"])]: dec(m["mask"])
                for m in item["masks"]}
        self._state_set = True
