"""The soak run (tests/soak/soak.py), short: 40 seconds at 40 requests per second."""

from __future__ import annotations

import pytest
from soak.soak import check, run


@pytest.mark.slow
def test_short_soak_loses_no_record_and_keeps_every_decision(logs):
    summary = run(logs, seconds=40, rate=40)
    assert summary["requests_sent"] >= 1200, summary
    # Every kind of outcome happened, so each check above had something to check.
    assert {"200", "401", "403", "429"} <= set(summary["statuses"]), summary["statuses"]
    assert check(summary) == [], summary
