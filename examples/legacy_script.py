"""A script written for NeuroTools' datastore, running on adatastore unchanged but for
its import line: blocking calls, the original key generator, no event loop in sight.

    python examples/legacy_script.py [ROOT_DIR]
"""

from __future__ import annotations

import sys
import tempfile

from parameters import ParameterSet

from adatastore import *  # noqa: F403 - was: from NeuroTools.datastore import *


class SpikeSource:
    version = "$Revision: 12 $"

    def __init__(self, parameters: ParameterSet, input: object = None) -> None:
        self.parameters = parameters
        self.input = input


def spike_times(source: SpikeSource) -> list[float]:
    rate = source.parameters["rate"]
    return [round(i / rate, 6) for i in range(int(source.parameters["duration"] * rate))]


def main(root: str) -> None:
    datastore = ShelveDataStore(  # noqa: F405
        root_dir=root,
        key_generator=keygenerators.hash_pickle,  # noqa: F405 - the original module's keys
    )
    source = SpikeSource(ParameterSet({"rate": 20.0, "duration": 2.0}))
    spikes = datastore.retrieve(source, "spikes")
    if spikes is None:
        print("computing")
        spikes = spike_times(source)
        datastore.store(source, "spikes", spikes)
    else:
        print("from the store")
    print(f"{len(spikes)} spikes, the last at {spikes[-1]} s")
    datastore.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
