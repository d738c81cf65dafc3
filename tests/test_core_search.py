"""The core-grid mapper's search for the fewest cores (``chips/core_grid.py``): the hot-channel
lower bound it searches on, and what the answers it gives are."""

from __future__ import annotations

import numpy as np
import pytest

from slamp_deploy.chips import load_profile
from slamp_deploy.chips.core_grid import CoreRule, _choose_cores, _GroupUsage
from slamp_deploy.chips.loihi import Loihi
from slamp_deploy.geometry import layer_stats
from tests.test_incidence import _pruned_chain


def _usages(name: str) -> tuple[_GroupUsage, object]:
    prof = load_profile("loihi")
    lay = next(la for la in _pruned_chain() if la.name == name)
    return _GroupUsage(lay, layer_stats(lay), Loihi().synapse_memory(lay, prof)), lay


@pytest.mark.parametrize("name", ["c1", "c2", "c3"])
def test_the_hot_channel_bound_never_exceeds_the_full_count_and_is_it_with_every_channel_hot(
        name):
    """At core counts of whole channels, groups across two channels and pieces of one, any set
    of hot channels bounds the most axons and bits of any group from below (a group cut at a
    run's edge holds fewer synapses); with every channel hot it is the full count."""
    rng = np.random.default_rng(3)
    use, lay = _usages(name)
    full = _usages(name)[0]
    n, cout = use.st.n_out, lay.out_shape[0]
    assert use.bounded and use.regions == cout
    for k in (1, 2, 5, 12, 13, 25, 40, 97, 300, 1001):
        want = (full.axons(k), full.bits(k))
        for _ in range(3):
            use.hot = set(rng.choice(cout, size=rng.integers(1, cout), replace=False).tolist())
            use._lower.clear()
            got = (use.lower_axons(k), use.lower_bits(k))
            assert got[0] <= want[0] and got[1] <= want[1], (k, use.hot)
        use.hot = set(range(cout))
        use._lower.clear()
        assert (use.lower_axons(k), use.lower_bits(k)) == want, k
    assert n > 1001


def test_learning_at_a_count_makes_the_bound_there_exact():
    """After a full count at k, the groups with the most axons and bits are hot, so the bound at
    k (recomputed, not read from the full count's cache) equals the full count."""
    use, _ = _usages("c2")
    for k in (7, 40, 300):
        use.hot = {0}
        use._lower.clear()
        use.learn(k)
        use._reduced.pop(k)  # the bound must now reach the full count over the hot groups
        full = _usages("c2")[0]
        assert (use.lower_axons(k), use.lower_bits(k)) == (full.axons(k), full.bits(k))


def _rules(use: _GroupUsage, limits: dict[str, int]) -> list[CoreRule]:
    prof = load_profile("loihi")
    fig = prof.core.in_axons_max
    return [CoreRule(rule="core.neurons_max", limit=limits["neurons"], usage=use.neurons,
                     figure=fig, relievable=False),
            CoreRule(rule="core.in_axons_max", limit=limits["axons"], usage=use.axons,
                     figure=fig, relievable=True, lower=use.lower_axons, learn=use.learn,
                     aligned=use.regions),
            CoreRule(rule="core.synapse_memory_bits", limit=limits["bits"], usage=use.bits,
                     figure=fig, relievable=True, lower=use.lower_bits, learn=use.learn,
                     aligned=use.regions)]


@pytest.mark.parametrize("name", ["c1", "c2", "c3"])
def test_the_search_answers_fit_on_every_group_and_are_near_the_smallest_count(name):
    """Under limits that put the answer among pieces of a channel, every rule's answer fits on
    every group (a fresh count, no bound), and the layer's cores are within a few of the
    smallest count that fits, found by trying every count."""
    use, _ = _usages(name)
    check = _usages(name)[0]
    n = use.st.n_out
    at = {k: (check.axons(k), check.bits(k)) for k in range(1, 400)}
    # limits that the usage at about 60 and 200 cores just meets
    limits = {"neurons": max(1, n // 50), "axons": at[200][0], "bits": at[60][1]}
    k, needed = _choose_cores(n, _rules(use, limits))
    ax, bt = check.axons(k), check.bits(k)
    assert ax <= limits["axons"] and bt <= limits["bits"] and -(-n // k) <= limits["neurons"]
    assert check.axons(needed["core.in_axons_max"]) <= limits["axons"]
    assert check.bits(needed["core.synapse_memory_bits"]) <= limits["bits"]
    smallest = next(j for j in range(1, 400) if at[j][0] <= limits["axons"]
                    and at[j][1] <= limits["bits"] and -(-n // j) <= limits["neurons"])
    assert smallest <= k <= smallest + max(3, smallest // 50), (smallest, k, needed)
