import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.ledger import PLATFORM, UNITS_PER_COIN, Ledger, settlement

amounts = st.floats(-50, 50, allow_nan=False)


@st.composite
def rounds_of_payments(draw):
    m = draw(st.integers(2, 8))
    n_rounds = draw(st.integers(1, 5))
    out = []
    for _ in range(n_rounds):
        upper = draw(arrays(float, (m, m), elements=amounts))
        P = np.triu(upper, 1) - np.triu(upper, 1).T
        platform = draw(arrays(float, (m,), elements=amounts))
        out.append((P, platform))
    endow = draw(arrays(float, (m,), elements=st.floats(0, 100)))
    return m, endow, out


@settings(max_examples=80, deadline=None)
@given(rounds_of_payments())
def test_money_is_conserved_exactly(case):
    m, endow, rounds = case
    ledger = Ledger()
    for k in range(m):
        ledger.endow(k, endow[k])
    granted = sum(int(round(e * UNITS_PER_COIN)) for e in endow)
    for r, (P, platform) in enumerate(rounds, start=1):
        paid, received = ledger.post_round(r, settlement(P, platform))
        ledger.check()
        total = sum(ledger._balances.values())
        assert total == granted  # exact, in integer units
        net = P.sum(axis=1) + platform
        for k in range(m):
            moved = paid.get(k, 0.0) - received.get(k, 0.0)
            assert moved == pytest.approx(net[k], abs=m * 1e-9)


@settings(max_examples=40, deadline=None)
@given(rounds_of_payments())
def test_settlement_without_platform_is_balanced(case):
    m, _, rounds = case
    P, _ = rounds[0]
    transfers = settlement(P, np.zeros(m))
    assert all(PLATFORM not in (a, b) for a, b, _ in transfers)
    assert all(units > 0 for _, _, units in transfers)
    # one transfer per unordered pair at most
    pairs = [tuple(sorted((a, b))) for a, b, _ in transfers]
    assert len(pairs) == len(set(pairs))


def test_tampering_is_detected_and_state_round_trips():
    ledger = Ledger()
    ledger.endow(0, 10.0)
    ledger.endow(1, 0.0)
    ledger.post(1, 0, 1, 3 * UNITS_PER_COIN)
    assert ledger.balance(0) == 7.0 and ledger.balance(1) == 3.0
    again = Ledger.from_state(ledger.state_dict())
    assert again.balance(1) == 3.0
    ledger._balances[1] += 1
    with pytest.raises(RuntimeError, match="ledger corrupted"):
        ledger.check()


def test_bad_transfers_are_refused():
    ledger = Ledger()
    ledger.endow(0, 1.0)
    with pytest.raises(ValueError, match="positive amount"):
        ledger.post(1, 0, PLATFORM, 0)
    with pytest.raises(ValueError, match="unknown account"):
        ledger.post(1, 0, 5, 10)
    with pytest.raises(ValueError, match="already holds"):
        ledger.endow(0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        settlement(np.array([[0, np.nan], [np.nan, 0]]), np.zeros(2))
