"""Canonical encoders for numpy array subclasses: values with units, masked arrays.

A Brian2 ``Quantity``, a ``quantities.Quantity``, an astropy ``Quantity``, a neo
``SpikeTrain`` and a ``numpy.ma.MaskedArray`` are all ``ndarray`` subclasses. Keyed by
their numbers alone (as plain arrays were), ``10*ms`` and ``10*mV`` shared a key — a
retrieve of one network returned the other's spikes. So no subclass is keyed as a plain
array: each library's type has an encoder here that says what the computation depends
on, in SI, so equal physical values key alike (``10*ms`` and ``0.01*second``):

- Brian2: the SI magnitude (Brian stores it) and the exponents of the 7 base dimensions;
- quantities: the value simplified to SI, and its units with their powers;
- astropy: the value decomposed into irreducible units, and those units with powers;
- pint (not an ndarray subclass; any registry): the magnitude in base units, and those;
- numpy masked arrays: the data, the mask and the fill value; ``numpy.memmap``: as the
  array it maps;
- neo objects: refused (`Refused`): a SpikeTrain's ``t_start``, ``t_stop``, sampling rate
  and annotations all change results, and no encoding here says them all.

Each set is registered the first time a value of its library is met (none of them is
imported by adatastore otherwise); `adatastore.keygenerators.register_encoder` takes
precedence for the same class.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["LOADERS", "Refused", "has_units"]

Encoder = Callable[[Any], Any]


class Refused(Exception):
    """An encoder's refusal: the type cannot be keyed, and this says why."""


def has_units(value: Any) -> bool:
    """Whether `value` is a quantity of Brian2, quantities, astropy or pint (shown with
    its unit in `explain`)."""
    module = type(value).__module__.split(".", 1)[0]
    return module in ("brian2", "quantities", "astropy", "pint") and any(
        hasattr(value, name) for name in ("dim", "dimensionality", "unit", "units")
    )


def _plain(value: Any) -> Any:
    """An array (or scalar) as a plain ndarray of its dtype and shape (0-d included)."""
    import numpy as np

    return np.asarray(value)


def _brian2(value: Any) -> Any:
    dimensions = getattr(getattr(value, "dim", None), "_dims", None)
    if dimensions is None:
        raise Refused("a Brian2 quantity whose dimensions cannot be read")
    import numpy as np

    return {"si": _plain(np.asarray(value)), "dimensions": [float(d) for d in dimensions]}


def _quantities(value: Any) -> Any:
    simplified = value.simplified
    units = sorted((unit.name, float(power)) for unit, power in simplified.dimensionality.items())
    return {"si": _plain(simplified.magnitude), "units": [list(item) for item in units]}


def _astropy(value: Any) -> Any:
    decomposed = value.decompose()
    unit = decomposed.unit
    units = sorted(
        (str(base), float(power)) for base, power in zip(unit.bases, unit.powers, strict=True)
    )
    return {
        "value": _plain(decomposed.value),
        "scale": float(unit.scale),
        "units": [list(item) for item in units],
    }


def _pint(value: Any) -> Any:
    base = value.to_base_units()
    units = sorted((str(name), float(power)) for name, power in base.unit_items())
    magnitude = base.magnitude
    return {"magnitude": magnitude if _is_number(magnitude) else _plain(magnitude), "units": units}


def _is_number(value: object) -> bool:
    return type(value) in (int, float, complex)


def _masked(value: Any) -> Any:
    import numpy as np

    return {
        "data": _plain(np.ma.getdata(value)),
        "mask": _plain(np.ma.getmaskarray(value)),
        "fill_value": _plain(value.fill_value),
    }


def _memmap(value: Any) -> Any:
    import numpy as np

    return _plain(np.asarray(value))


def _neo(value: Any) -> Any:
    raise Refused(
        f"a neo {type(value).__name__} has no canonical encoding here (its units, t_start, "
        "t_stop, sampling rate and annotations all change results); pass what the "
        "computation reads as plain parameters (say, the spike times in ms as a numpy "
        "array and t_stop as a number), or register an encoder for it "
        "(adatastore.keygenerators.register_encoder)"
    )


def _classes(module: str, *names: str) -> list[type]:
    found = sys.modules.get(module)
    return [getattr(found, name) for name in names if found is not None and hasattr(found, name)]


def _numpy() -> list[tuple[type, Encoder]]:
    import numpy as np

    return [(np.ma.MaskedArray, _masked), (np.memmap, _memmap)]


def _load_brian2() -> list[tuple[type, Encoder]]:
    return [(cls, _brian2) for cls in _classes("brian2.units.fundamentalunits", "Quantity")]


def _load_quantities() -> list[tuple[type, Encoder]]:
    return [(cls, _quantities) for cls in _classes("quantities.quantity", "Quantity")]


def _load_astropy() -> list[tuple[type, Encoder]]:
    return [(cls, _astropy) for cls in _classes("astropy.units.quantity", "Quantity")]


def _load_pint() -> list[tuple[type, Encoder]]:
    # every registry's Quantity class derives from this one
    return [(cls, _pint) for cls in _classes("pint.facets.plain.quantity", "PlainQuantity")]


def _load_neo() -> list[tuple[type, Encoder]]:
    # before quantities' encoder in a SpikeTrain's MRO (SpikeTrain, DataObject, BaseNeo,
    # quantities.Quantity, ndarray): never keyed by its values and units alone
    return [(cls, _neo) for cls in _classes("neo.core.baseneo", "BaseNeo")]


LOADERS: dict[str, Callable[[], list[tuple[type, Encoder]]]] = {
    "numpy": _numpy,
    "brian2": _load_brian2,
    "quantities": _load_quantities,
    "astropy": _load_astropy,
    "pint": _load_pint,
    "neo": _load_neo,
}
"""By top-level package: the (class, encoder) pairs to register when a value whose type
derives from one of that package's classes is first met."""
