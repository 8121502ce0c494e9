"""Every method of every hub service states who may call it."""

from __future__ import annotations

from remitnet.clearing.v1 import clearing_pb2
from remitnet.fx.v1 import fx_pb2
from remitnet.netting.v1 import netting_pb2
from remitnet.participants.v1 import participants_pb2
from remitnet.services.entrypoints.server import PROVIDER_METHODS, ROLES
from remitnet.settlement.v1 import settlement_pb2


def test_every_hub_method_has_a_role() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (participants_pb2, clearing_pb2, fx_pb2, netting_pb2, settlement_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert "/remitnet.fx.v1.FxService/CreateQuotes" in methods
    assert sorted(methods - set(ROLES)) == []


def test_an_fx_provider_may_call_its_own_rates_and_reads_only() -> None:
    assert set(ROLES) >= PROVIDER_METHODS
    assert {m.rsplit("/", 1)[1] for m in PROVIDER_METHODS} == {
        "UpdateRates",
        "ListRates",
        "GetPosition",
        "ListCycles",
        "GetCycle",
        "GetStatement",
        "GetReconciliation",
    }
