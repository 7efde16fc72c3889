"""Parameters with units, masks and other numpy array subclasses (issue 30).

Every numpy subclass was keyed as a plain array, by its numbers alone: ``10*ms`` and
``10*mV`` shared a key, and a retrieve of one network returned the other's spikes. Here
with the field's own packages — quantities, astropy, pint, Brian2 when it imports with
this numpy (Brian2 2.9 needs numpy < 2.4) — and with masked arrays and a subclass of
our own, which need none.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from components import PlainComponent
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adatastore import AsyncSQLiteDataStore
from adatastore._keys import encoders as _encoders
from adatastore.errors import ConfigurationError, UnhashableParameterError
from adatastore.keygenerators import canonical_hash, register_encoder

astropy_units = pytest.importorskip("astropy.units")
pint = pytest.importorskip("pint")
pq = pytest.importorskip("quantities")
neo = pytest.importorskip("neo")

try:  # Brian2 2.9 refuses numpy 2.4 at import; its pyparsing use warns of deprecations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import brian2
except Exception as error:  # whatever stops it importing
    brian2 = None
    BRIAN2_MISSING = f"Brian2 does not import here: {type(error).__name__}: {error}"
else:
    BRIAN2_MISSING = ""

if brian2 is None and os.environ.get("ADATASTORE_REQUIRE_BRIAN2"):  # CI's Brian2 job
    raise RuntimeError(BRIAN2_MISSING)

needs_brian2 = pytest.mark.skipif(brian2 is None, reason=BRIAN2_MISSING or "-")
"""Brian2 runs in a job of its own in CI (``.[test,brian2]``: numpy < 2.4)."""

ureg = pint.UnitRegistry()
other_ureg = pint.UnitRegistry()  # its own Quantity class


def key(value: Any) -> str:
    return canonical_hash(PlainComponent({"tau": value}))


class Tagged(np.ndarray):
    """An ndarray subclass that carries metadata numpy knows nothing of."""

    tag = "unit-less"


def _tagged(values: list[float]) -> Tagged:
    return np.asarray(values, dtype=float).view(Tagged)


@pytest.fixture
def restore_encoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """register_encoder is process-wide: a test's registrations are undone after it."""
    monkeypatch.setattr(_encoders, "_registered", dict(_encoders._registered))
    _encoders._found.clear()
    yield
    _encoders._found.clear()


# -- pairs that must key apart ------------------------------------------------------------------

APART: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
    ("quantities ms/s", lambda: 10 * pq.ms, lambda: 10 * pq.s),
    ("quantities ms/mV", lambda: 10 * pq.ms, lambda: 10 * pq.mV),
    ("quantities Hz/S", lambda: 20 * pq.Hz, lambda: 20 * pq.S),
    ("quantities arrays", lambda: [1, 2] * pq.ms, lambda: [1, 2] * pq.mV),
    ("quantities 0-d/1-elem", lambda: 10 * pq.ms, lambda: [10] * pq.ms),
    ("astropy ms/s", lambda: 10 * astropy_units.ms, lambda: 10 * astropy_units.s),
    ("astropy ms/mV", lambda: 10 * astropy_units.ms, lambda: 10 * astropy_units.mV),
    ("astropy Hz/S", lambda: 20 * astropy_units.Hz, lambda: 20 * astropy_units.S),
    ("astropy arrays", lambda: [1, 2] * astropy_units.ms, lambda: [1, 2] * astropy_units.mV),
    ("pint ms/s", lambda: 10 * ureg.ms, lambda: 10 * ureg.s),
    ("pint ms/mV", lambda: 10 * ureg.ms, lambda: 10 * ureg.mV),
    ("pint arrays", lambda: np.array([1, 2]) * ureg.ms, lambda: np.array([1, 2]) * ureg.mV),
    ("pint scalar/array", lambda: 10 * ureg.ms, lambda: np.array([10]) * ureg.ms),
    ("units/plain", lambda: 10 * pq.ms, lambda: np.array(10.0)),
    ("units/plain array", lambda: [1.0, 2.0] * astropy_units.ms, lambda: np.array([1.0, 2.0])),
    (
        "masked/data",
        lambda: np.ma.array([1, 2, 3], mask=[False, True, False]),
        lambda: np.array([1, 2, 3]),
    ),
    (
        "masked/mask",
        lambda: np.ma.array([1, 2, 3], mask=[False, True, False]),
        lambda: np.ma.array([1, 2, 3], mask=[False, False, True]),
    ),
    (
        "masked/fill value",
        lambda: np.ma.array([1.0, 2.0], mask=[False, True], fill_value=-1.0),
        lambda: np.ma.array([1.0, 2.0], mask=[False, True], fill_value=7.0),
    ),
    ("0-d/1-elem", lambda: np.array(0.01), lambda: np.array([0.01])),
    ("0-d/2-d", lambda: np.array(0.01), lambda: np.array([[0.01]])),
]


@pytest.mark.parametrize(
    ("first", "second"), [pair[1:] for pair in APART], ids=[p[0] for p in APART]
)
def test_values_that_differ_in_units_mask_or_shape_key_apart(
    first: Callable[[], Any], second: Callable[[], Any]
) -> None:
    assert key(first()) != key(second())
    assert key(first()) == key(first())  # and each is stable


@needs_brian2
@pytest.mark.parametrize(
    ("first", "second"),
    [("10*ms", "10*mV"), ("20*Hz", "20*siemens"), ("[1, 2]*ms", "[1, 2]*mV"), ("10*ms", "[10]*ms")],
)
def test_brian2_quantities_key_apart(first: str, second: str) -> None:
    names = vars(brian2)
    assert key(eval(first, names)) != key(eval(second, names))  # our literals


# -- equal physical values key alike (documented) -----------------------------------------------


def test_equal_physical_values_key_alike_within_each_package() -> None:
    assert key(10 * pq.ms) == key(0.01 * pq.s)
    assert key(10 * astropy_units.ms) == key(0.01 * astropy_units.s)
    assert key(10 * ureg.ms) == key(0.01 * ureg.s)
    assert key(np.array([10.0, 20.0]) * ureg.ms) == key(np.array([0.01, 0.02]) * ureg.s)


def test_pint_quantities_of_two_registries_key_alike() -> None:
    assert type(10 * ureg.ms) is not type(10 * other_ureg.ms)  # two classes
    assert key(10 * ureg.ms) == key(10 * other_ureg.ms)
    assert key(10 * ureg.ms) != key(10 * other_ureg.mV)


@needs_brian2
def test_brian2_equal_physical_values_key_alike() -> None:
    assert brian2 is not None
    assert key(10 * brian2.ms) == key(0.01 * brian2.second)


def test_a_masked_array_keys_by_what_is_masked_not_by_the_hidden_values() -> None:
    # the data under the mask is still data: kept in the key (a computation may read it)
    assert key(np.ma.array([1, 2], mask=[False, True])) != key(
        np.ma.array([1, 9], mask=[False, True])
    )
    assert key(np.ma.array([1, 2], mask=[False, True])) == key(
        np.ma.array([1, 2], mask=[False, True])
    )


# -- subclasses without an encoder are refused; a registered encoder takes effect ---------------


def test_an_unknown_ndarray_subclass_is_refused_naming_path_and_class() -> None:
    with pytest.raises(UnhashableParameterError, match=r"'tau'.*Tagged.*numpy array subclass"):
        key(_tagged([1.0, 2.0]))


def test_neo_objects_are_refused_with_what_to_pass_instead() -> None:
    train = neo.SpikeTrain([1.0, 2.0] * pq.ms, t_stop=200 * pq.ms)
    with pytest.raises(UnhashableParameterError, match=r"'tau'.*SpikeTrain.*t_stop"):
        key(train)


def test_a_registered_encoder_for_a_subclass_takes_effect(restore_encoders: None) -> None:
    register_encoder(Tagged, lambda value: {"values": np.asarray(value), "tag": value.tag})
    assert key(_tagged([1.0, 2.0])) == key(_tagged([1.0, 2.0]))
    assert key(_tagged([1.0, 2.0])) != key(np.array([1.0, 2.0]))
    assert key(_tagged([1.0, 2.0])) != key(_tagged([1.0, 3.0]))


def test_a_registered_encoder_comes_before_the_built_in_one(restore_encoders: None) -> None:
    seen: list[Any] = []

    def by_name(value: Any) -> Any:
        seen.append(value)
        return {"text": str(value)}

    built_in = key(10 * pq.ms)
    register_encoder(pq.Quantity, by_name)
    assert key(10 * pq.ms) != built_in
    assert seen  # ours was called, not the built-in one
    assert key(10 * pq.ms) != key(0.01 * pq.s)  # as its encoder says: by text


def test_a_subclass_own_encoder_is_found_before_its_base_class_one(
    restore_encoders: None,
) -> None:
    class Special(Tagged):
        pass

    register_encoder(Tagged, lambda value: {"tagged": np.asarray(value)})
    register_encoder(Special, lambda value: {"special": np.asarray(value)})
    plain = np.asarray([1.0])
    assert key(plain.view(Special)) != key(plain.view(Tagged))


# -- arrays by dtype, shape and bytes: hypothesis ----------------------------------------------

DTYPES = st.one_of(
    hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes()
)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
def test_arrays_key_by_dtype_shape_and_bytes(array: Any) -> None:
    assert key(array) == key(array.copy())
    if array.ndim:
        assert key(array) == key(np.asfortranarray(array))  # the layout is not the content
    assert key(array) != key(array.reshape((1, *array.shape)))  # one more axis
    if array.size == 1:
        assert key(array) != key(array.reshape(()) if array.ndim else array.reshape(1))
    if array.dtype.kind in "iuf" and array.dtype.itemsize > 1:
        assert key(array) != key(array.astype(array.dtype.newbyteorder()))  # dtype in the key


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    st.sampled_from(["ms", "s", "mV", "Hz"]),
    st.sampled_from(["ms", "s", "mV", "Hz"]),
)
def test_quantities_arrays_key_apart_by_unit(array: Any, first: str, second: str) -> None:
    if first == second or ({first, second} == {"ms", "s"} and not array.any()):
        return  # zeros are zero in ms and in s
    assert key(array * getattr(astropy_units, first)) != key(array * getattr(astropy_units, second))
    assert key(array * getattr(ureg, first)) != key(array * getattr(ureg, second))


# -- end to end: the wrong hit, and explain -----------------------------------------------------


@pytest.mark.anyio
async def test_a_network_with_another_unit_misses_and_explain_shows_units(
    tmp_path: Any,
) -> None:
    async with AsyncSQLiteDataStore(tmp_path / "cache.db") as store:
        await store.store(PlainComponent({"tau": 10 * pq.ms}), "spikes", [1, 2, 3])
        assert await store.retrieve(PlainComponent({"tau": 10 * pq.mV}), "spikes") is None
        assert await store.retrieve(PlainComponent({"tau": 0.01 * pq.s}), "spikes") == [1, 2, 3]
        explanation = await store.explain(PlainComponent({"tau": 11 * pq.ms}), "spikes")
    text = str(explanation)
    assert "tau: asked 11.0 ms, stored 10.0 ms" in text
    assert "ndarray" not in text
    assert "values[0]" not in text


@pytest.mark.anyio
async def test_quantities_results_round_trip_with_their_units(tmp_path: Any) -> None:
    value = np.arange(5.0) * pq.mV
    async with AsyncSQLiteDataStore(tmp_path / "cache.db", mmap=True) as store:
        await store.store(PlainComponent({"n": 1}), "v", value)
        back = await store.retrieve(PlainComponent({"n": 1}), "v")
    assert isinstance(back, pq.Quantity)
    assert back.dimensionality == value.dimensionality
    np.testing.assert_array_equal(back.magnitude, value.magnitude)


# -- warm never runs a plain compute in threads unless asked -----------------------------------


_BLOCK = bytes(64 * 1024)


class GlobalClock:
    """A simulator's global state, as Brian2 keeps its clock: computations that overlap
    in threads read each other's time, and give wrong results."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.time = 0

    def simulate(self, component: PlainComponent) -> int:
        n = int(component.parameters["n"])
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        self.time = 0
        for _ in range(n * 20):
            self.time += 1  # another thread's reset lands here when they overlap
            hashlib.sha256(_BLOCK).digest()  # as numpy does, lets other threads run
        with self.lock:
            self.active -= 1
        return self.time


def test_warm_runs_a_plain_compute_one_at_a_time_by_default(tmp_path: Any) -> None:
    from adatastore import open_store_sync

    clock = GlobalClock()
    components = [PlainComponent({"n": n}) for n in range(1, 25)]
    with open_store_sync(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        report = store.warm(components, "t", clock.simulate)
        assert report.computed == 24
        assert report.ok
        stored = [store.retrieve(component, "t") for component in components]
    assert clock.most == 1
    assert stored == [n * 20 for n in range(1, 25)]  # as one at a time gives


def test_warm_runs_threads_when_asked(tmp_path: Any) -> None:
    from adatastore import open_store_sync

    barrier = threading.Barrier(4, timeout=60)  # passes only with 4 at once

    def compute(component: PlainComponent) -> int:
        barrier.wait()
        return int(component.parameters["n"])

    components = [PlainComponent({"n": n}) for n in range(8)]
    with open_store_sync(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        assert store.warm(components, "v", compute, threads=4).computed == 8
    with open_store_sync(f"sqlite:///{tmp_path / 'other.db'}") as store:
        barrier.reset()
        assert store.warm(components, "v", compute, threads=True, concurrency=4).computed == 8


def test_warm_refuses_concurrency_for_a_plain_compute_without_threads(tmp_path: Any) -> None:
    from adatastore import open_store_sync

    with open_store_sync(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        with pytest.raises(ConfigurationError, match=r"threads=8.*thread-safe.*processes=True"):
            store.warm([PlainComponent({"n": 1})], "v", int, concurrency=8)
        with pytest.raises(ConfigurationError, match="threads= is for plain compute"):
            store.warm([PlainComponent({"n": 1})], "v", int, threads=2, processes=True)


def _lif(component: PlainComponent) -> int:
    """A small Brian2 LIF network: its spike count (Brian2 keeps global clock state)."""
    assert brian2 is not None
    b = brian2
    b.prefs.codegen.target = "numpy"
    b.start_scope()
    drive = float(component.parameters["drive"])
    group = b.NeuronGroup(
        20,
        "dv/dt = (drive*mV - v)/(10*ms) : volt",
        threshold="v > 10*mV",
        reset="v = 0*mV",
        method="exact",
        namespace={"drive": drive, "mV": b.mV, "ms": b.ms},
    )
    group.v = "rand()*10*mV"
    b.seed(int(component.parameters["seed"]))
    monitor = b.SpikeMonitor(group)
    b.run(50 * b.ms)
    return int(monitor.num_spikes)


@needs_brian2
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Brian2's use of pyparsing
def test_a_brian2_sweep_warmed_with_defaults_caches_what_one_at_a_time_gives(
    tmp_path: Any,
) -> None:
    from adatastore import open_store_sync

    components = [PlainComponent({"drive": d, "seed": 1}) for d in (5, 11, 15, 20, 30, 40)]
    alone = [_lif(component) for component in components]
    with open_store_sync(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        assert store.warm(components, "spikes", _lif).computed == len(components)
        assert [store.retrieve(c, "spikes") for c in components] == alone
    assert any(alone)


@needs_brian2
@pytest.mark.anyio
async def test_explain_shows_a_brian2_value_with_its_unit(tmp_path: Any) -> None:
    assert brian2 is not None
    async with AsyncSQLiteDataStore(tmp_path / "cache.db") as store:
        await store.store(PlainComponent({"tau": 10 * brian2.ms}), "spikes", [1])
        explanation = await store.explain(PlainComponent({"tau": 11 * brian2.ms}), "spikes")
    assert "tau: asked 11. ms, stored 10. ms" in str(explanation)
