"""The suite's own scheduling: tests marked ``xdist_group`` share one test process.

The browser tests share one Django server and one browser, and the topology drivers run
once per back-end, because ``--dist loadgroup`` sends each group to one process. pytest
9.2's structured node IDs silently undid that (pytest-xdist #1386: every grouped test
was dealt out alone, and each test process ran a topology driver of its own: 2 x 20 s
for S3); the test extra pins ``pytest<9.2`` until xdist follows, and this test fails
when grouping stops working again.
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("a group of its own")
def test_a_grouped_test_is_scheduled_as_part_of_its_group(request: pytest.FixtureRequest) -> None:
    # xdist's test processes say so in their options (their own "dist" is "no")
    if os.environ.get("PYTEST_XDIST_WORKER") is None or not getattr(
        request.config.option, "loadgroup", False
    ):
        pytest.skip("only under --dist loadgroup in test processes (the README's command)")
    # xdist names the group in the node ID it schedules by: no suffix, no grouping
    assert request.node.nodeid.endswith("@a group of its own"), request.node.nodeid
