"""Venue adapters are chosen by name from one registry; the gateway's config accepts exactly
those names, and every adapter is a VenueAdapter with the one interface (open, settle, ...)."""
import pytest

from ttquant.core.daemon.config import ConfigError, parse_config
from ttquant.core.gateway.config import GatewayConfig
from ttquant.core.venues.base import VenueAdapter, VenueReport
from ttquant.core.venues.dry import DryRunAdapter
from ttquant.core.venues.registry import ADAPTERS, adapter_class


def test_every_registered_adapter_is_a_venue_adapter_of_its_name():
    for kind in ADAPTERS:
        cls = adapter_class(kind)
        assert issubclass(cls, VenueAdapter) and cls.name == kind
    with pytest.raises(KeyError, match="no venue adapter 'nyse' \\(known: sim, dry, binance\\)"):
        adapter_class("nyse")


def test_the_gateway_config_takes_only_registered_adapters(tmp_path):
    with pytest.raises(ConfigError, match="adapter.*kind: one of sim, dry, binance, got 'nyse'"):
        parse_config({"venue": "binance", "adapter": {"kind": "nyse"}}, GatewayConfig, str(tmp_path / "g.toml"),
                     instance="binance")


def test_the_base_interface_answers_for_an_adapter_that_needs_nothing_more():
    a = DryRunAdapter.open(cfg=None, runner=None)
    assert a.settle() is True and a.reachable() is True
    from ttquant.core.records import Order, OrderAction
    assert a.send(Order(strategy_id=3, client_order_id=9, action=OrderAction.NEW))
    (rep,) = a.poll()
    assert isinstance(rep, VenueReport) and (rep.strategy_id, rep.client_order_id) == (3, 9)
    a.close()
