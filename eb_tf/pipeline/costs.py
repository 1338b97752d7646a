"""Cost accounting of a training phase: epochs, wall-clock, training FLOPs, energy.

- Training FLOPs follow the paper's convention: per-sample forward FLOPs (1 MAC = 1
  FLOP, `eb_tf.count_flops`) x 3 for forward + backward x the samples seen.
- Energy is read from hardware counters only: NVML's total-energy counter of every
  NVIDIA GPU (through ctypes, no extra dependency) plus Intel RAPL package counters
  (`/sys/class/powercap/intel-rapl:N/energy_uj`, readable on bare-metal Linux). When
  neither is readable the record says `available: False` and why; a number is never
  estimated or invented.
- A `PhaseMeter` accumulates over interruptions: its `state()` goes into the per-epoch
  checkpoint and a resumed run continues from it (work redone after a kill is not
  counted twice; the seconds lost to the kill are not counted at all).

Example:

    from eb_tf.pipeline import costs
    meter = costs.PhaseMeter()
    meter.start(); ...train...; meter.stop()
    costs.phase_record(epochs=10, meter=meter, forward_flops=313e6, samples=500000,
                       precision="fp32")
"""
import ctypes
import glob
import os
import time
from typing import Dict, Optional

__all__ = ["EnergyCounter", "PhaseMeter", "training_flops", "phase_record", "trained_by"]

_RAPL_GLOB = "/sys/class/powercap/intel-rapl:[0-9]*"


def training_flops(forward_flops: int, samples: int) -> int:
    """3 x per-sample forward FLOPs x samples seen (forward + backward ~ 3 forwards)."""
    if forward_flops < 0 or samples < 0:
        raise ValueError(f"forward_flops={forward_flops} and samples={samples} must be >= 0")
    return int(3 * int(forward_flops) * int(samples))


class EnergyCounter:
    """Cumulative energy (joules) from NVML and/or RAPL, or None with a reason."""

    def __init__(self):
        self.sources = []
        self.reason = ""
        self._nvml = None
        self._gpus = []
        self._rapl = []
        self._why = []
        self._open_nvml()
        self._open_rapl()
        if not self.sources:
            self.reason = ("no readable energy counter: " + "; ".join(self._why)
                           if self._why else "no readable energy counter")

    @property
    def available(self) -> bool:
        return bool(self.sources)

    def _open_nvml(self):
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            self._why.append("NVML library not found (no NVIDIA driver)")
            return
        try:
            if lib.nvmlInit_v2() != 0:
                self._why.append("nvmlInit failed")
                return
            count = ctypes.c_uint()
            if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
                return
            for i in range(count.value):
                handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle)) == 0:
                    self._gpus.append(handle)
            self._nvml = lib
            if self._gpus and self._read_nvml() is not None:
                self.sources.append("nvml")
            else:
                self._why.append("NVML has no GPU with an energy counter")
        except (AttributeError, OSError) as e:
            self._why.append(f"NVML unusable ({e})")

    def _read_nvml(self) -> Optional[float]:
        total = 0
        for handle in self._gpus:
            mj = ctypes.c_ulonglong()
            if self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(mj)) != 0:
                return None
            total += mj.value
        return total / 1e3

    def _open_rapl(self):
        for domain in sorted(glob.glob(_RAPL_GLOB)):
            path = os.path.join(domain, "energy_uj")
            try:
                with open(path) as f:
                    int(f.read())
                with open(os.path.join(domain, "max_energy_range_uj")) as f:
                    wrap = int(f.read())
            except (OSError, ValueError):
                self._why.append(f"RAPL {path} not readable")
                continue
            self._rapl.append((path, wrap))
        if self._rapl:
            self.sources.append("rapl")
        elif not glob.glob(_RAPL_GLOB):
            self._why.append("no RAPL powercap domains (virtual machine or non-Intel CPU)")

    def read(self) -> Dict[str, float]:
        """{source: cumulative joules} (RAPL per domain, raw microjoule counters)."""
        out = {}
        if "nvml" in self.sources:
            value = self._read_nvml()
            if value is not None:
                out["nvml"] = value
        for path, wrap in self._rapl:
            with open(path) as f:
                out[path] = int(f.read()) / 1e6
        return out

    def joules_between(self, before: Dict[str, float], after: Dict[str, float]) -> float:
        """Energy between two `read()`s, handling RAPL counter wrap-around."""
        total = 0.0
        wraps = dict(self._rapl)
        for key, end in after.items():
            delta = end - before.get(key, end)
            if delta < 0 and key in wraps:
                delta += wraps[key] / 1e6
            total += delta
        return total


class PhaseMeter:
    """Wall-clock seconds and energy of one phase, accumulated over start/stop spans."""

    def __init__(self, state: Optional[dict] = None, counter: Optional[EnergyCounter] = None):
        state = state or {}
        self.seconds = float(state.get("seconds", 0.0))
        self.joules = state.get("energy_joules")
        self.counter = counter if counter is not None else EnergyCounter()
        if not self.counter.available:
            self.joules = None
        elif self.joules is None:
            self.joules = 0.0
        self._t0 = None
        self._e0 = None

    def start(self):
        self._t0 = time.perf_counter()
        self._e0 = self.counter.read() if self.counter.available else None

    def stop(self):
        """Adds the span since `start()`; safe to call twice."""
        if self._t0 is None:
            return
        self.seconds += time.perf_counter() - self._t0
        if self._e0 is not None:
            self.joules += self.counter.joules_between(self._e0, self.counter.read())
        self._t0 = None

    def lap(self):
        """Adds the span so far and starts a new one (used at every epoch end)."""
        self.stop()
        self.start()

    def state(self) -> dict:
        """JSON state for checkpoints; `PhaseMeter(state)` continues from it."""
        return {"seconds": self.seconds, "energy_joules": self.joules}

    def energy(self) -> dict:
        if self.joules is None:
            return {"available": False, "joules": None, "reason": self.counter.reason}
        return {"available": True, "joules": round(self.joules, 3),
                "source": "+".join(self.counter.sources)}


def phase_record(epochs: int, meter: PhaseMeter, forward_flops: int, samples: int,
                 precision: str, **extra) -> dict:
    """The report's record of one phase (epochs, seconds, flops, energy, precision)."""
    record = {"epochs": int(epochs), "seconds": round(meter.seconds, 3),
              "forward_flops_per_sample": int(forward_flops), "samples": int(samples),
              "flops": training_flops(forward_flops, samples), "precision": precision,
              "energy": meter.energy()}
    record.update(extra)
    return record


def trained_by(phases: dict, names, key: Optional[str]) -> Optional[Dict[str, dict]]:
    """{phase: record} of the phases `names` that trained ratio `key`'s model.

    A phase split by ratio (`by_ratio`, the retrain) gives that ratio's record. This is
    how a run's training cost is summed (the benchmark's rows, the run's `vs_dense`).
    Returns None while one of them is missing or unfinished (no `seconds` yet).
    """
    parts = {}
    for name in names:
        phase = phases.get(name) or {}
        part = phase.get("by_ratio", {}).get(key) if "by_ratio" in phase else phase
        if not part or "seconds" not in part:
            return None
        parts[name] = part
    return parts
