"""Tests of eb_tf.pipeline.costs: training FLOPs, the phase meter, honest energy reporting."""
import pytest

from eb_tf.pipeline import costs


class FakeCounter(costs.EnergyCounter):
    """A counter whose readings the test sets (RAPL-like, wraps at 100 J)."""

    def __init__(self, readings):
        self.sources, self.reason, self._rapl = ["rapl"], "", [("pkg", 100_000_000)]
        self._readings = iter(readings)

    def read(self):
        return {"pkg": next(self._readings)}


class NoCounter(costs.EnergyCounter):
    def __init__(self):
        self.sources, self.reason, self._rapl = [], "no readable energy counter: test", []


def test_training_flops_is_three_forward_passes_per_sample():
    assert costs.training_flops(313_000_000, 1000) == 939_000_000_000
    with pytest.raises(ValueError, match="samples=-1 must be >= 0"):
        costs.training_flops(1, -1)


def test_meter_accumulates_spans_and_continues_from_its_state():
    meter = costs.PhaseMeter(counter=NoCounter())
    meter.start()
    meter.stop()
    meter.stop()  # idempotent
    first = meter.seconds
    assert first >= 0
    resumed = costs.PhaseMeter({"seconds": 10.0, "energy_joules": None}, counter=NoCounter())
    resumed.start()
    resumed.stop()
    assert resumed.seconds >= 10.0 and resumed.state()["seconds"] == resumed.seconds


def test_energy_is_unavailable_with_the_reason_never_invented():
    meter = costs.PhaseMeter({"seconds": 1.0, "energy_joules": 5.0}, counter=NoCounter())
    assert meter.energy() == {"available": False, "joules": None,
                              "reason": "no readable energy counter: test"}


def test_energy_sums_counter_deltas_and_handles_rapl_wraparound():
    meter = costs.PhaseMeter(counter=FakeCounter([10.0, 30.0, 95.0, 5.0]))
    meter.start()
    meter.stop()           # 20 J
    meter.start()
    meter.stop()           # 95 -> 5 wraps at 100 J: 10 J
    assert meter.energy() == {"available": True, "joules": 30.0, "source": "rapl"}


def test_this_machine_reports_energy_honestly():
    counter = costs.EnergyCounter()
    if counter.available:
        reading = counter.read()
        assert reading and all(v >= 0 for v in reading.values())
    else:
        assert counter.reason.startswith("no readable energy counter")


def test_phase_record_fields():
    meter = costs.PhaseMeter({"seconds": 2.5}, counter=NoCounter())
    rec = costs.phase_record(4, meter, forward_flops=100, samples=50, precision="int8",
                             done=True)
    assert rec["epochs"] == 4 and rec["seconds"] == 2.5 and rec["flops"] == 15000
    assert rec["precision"] == "int8" and rec["done"] and not rec["energy"]["available"]
