"""venue-sim's account option: exact amounts at 8 decimals, and a clear refusal of a bad one."""
import argparse

import pytest

from ttquant.core.sim.binance_venue import _parse_balances


def parser():
    p = argparse.ArgumentParser(prog="venue-sim")
    p.exit_on_error = False
    return p


def test_balances_are_exact_at_eight_decimals():
    assert _parse_balances(parser(), "USDT=100000, btc=0.00000001,ETH=2.5") == \
        {"USDT": 100_000 * 10**8, "BTC": 1, "ETH": 250_000_000}
    assert _parse_balances(parser(), "") == {}


@pytest.mark.parametrize("text", ["USDT=1.123456789", "USDT=-1", "USDT=abc", "=5", "USDT"])
def test_a_bad_balance_is_refused_by_name(text, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse_balances(parser(), text)
    assert exc.value.code == 2
    assert f"--balances: {text.split(',')[0]!r} is not ASSET=AMOUNT" in capsys.readouterr().err
