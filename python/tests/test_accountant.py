"""`cairn-node privacy` (Cairn's Rényi-DP accountant) against Google's dp-accounting package: the
Gaussian mechanism at noise multiplier z composed over T rounds, converted to (ε, δ). For every
parameter set Cairn's ε must be within 2 % below dp-accounting's RDP accountant (Cairn searches
the order continuously, dp-accounting over a fixed list) or at most 5 % above it (#22)."""
import json
import os
import subprocess

import dp_accounting
import pytest
from dp_accounting import rdp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = os.path.join(os.environ.get("CAIRN_BIN", os.path.join(ROOT, ".build", "debug")), "cairn-node")

# (z, rounds, delta): z from 0.5 to 5, rounds from 1 to 1,000, delta from 1e-5 to 1e-9.
CASES = [
    (0.5, 1, 1e-5), (0.5, 100, 1e-7), (0.8, 10, 1e-5), (1.0, 1, 1e-9), (1.0, 100, 1e-5),
    (1.0, 1000, 1e-6), (1.5, 50, 1e-8), (2.0, 1, 1e-5), (2.0, 1000, 1e-9), (3.0, 200, 1e-5),
    (3.0, 1000, 1e-7), (4.0, 20, 1e-6), (5.0, 1, 1e-9), (5.0, 1000, 1e-5),
]


def google(z, rounds, delta):
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(z), rounds)
    return accountant.get_epsilon(delta)


def cairn(z, rounds, delta):
    out = subprocess.run(
        [NODE, "privacy", "--noise-multiplier", repr(z), "--rounds", str(rounds), "--delta", repr(delta), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["epsilon"]


@pytest.mark.parametrize("z,rounds,delta", CASES)
def test_epsilon_agrees_with_dp_accounting(z, rounds, delta):
    theirs = google(z, rounds, delta)
    ours = cairn(z, rounds, delta)
    ratio = ours / theirs
    print(f"z={z} rounds={rounds} delta={delta:g}: cairn {ours:.4f}, dp-accounting {theirs:.4f}, ratio {ratio:.4f}")
    assert 0.98 <= ratio <= 1.05


def test_noise_multiplier_for_a_budget_spends_at_most_it():
    out = subprocess.run(
        [NODE, "privacy", "--epsilon", "8", "--rounds", "100", "--delta", "1e-5", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    z = json.loads(out)["noiseMultiplier"]
    assert google(z, 100, 1e-5) <= 8 * 1.02
    # Three significant digits, rounded up: one step less noise spends more than the budget.
    step = 10 ** (len(str(int(z))) - 3)
    assert cairn(z - step, 100, 1e-5) > 8
