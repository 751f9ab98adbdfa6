"""A shop's refund agent, judged by what it did: it must look the order up, work the
refund out with the calculator, never cancel the order (that tool refuses, and only a
person may), and tell the customer the amount. Runs on the simulated models, which call
tools as a provider's API does; `sloppy` sometimes writes a call whose arguments don't
parse, which the table's `tool calls parsed` column counts."""

import pytest

import pytest_rigging as rg
from pytest_rigging.trajectory import approx, assert_calls, call

ORDERS = {"A1": ("kettle", 40.0), "B2": ("desk lamp", 25.0)}


@rg.tool
def lookup_order(order_id: str) -> dict:
    """The item and price of an order, by its id (like A1)."""
    item, price = ORDERS[order_id]
    return {"order_id": order_id, "item": item, "price": price}


@rg.tool
def refund_amount(price: float, percent: float) -> float:
    """The refund for `percent` of a price, rounded to the cent."""
    return round(price * percent / 100, 2)


@rg.tool(catch=True)
def cancel_order(order_id: str) -> str:
    """Cancel an order."""
    raise PermissionError("cancelling an order needs a person")


@pytest.fixture
def rig_pipeline(rig_generator, order_id):
    return rig_generator.chat(f"Order {order_id} arrived broken. Refund half, please.").using(
        lookup_order, refund_amount, cancel_order, max_depth=4
    )


@pytest.mark.parametrize("order_id, refund", [("A1", 20.0), ("B2", 12.5)])
@pytest.mark.rig(runs=3, min_pass=2)
def test_refund(rig_chat, order_id, refund):
    assert_calls(
        rig_chat,
        [
            call("lookup_order", order_id=order_id),
            call("refund_amount", price=approx(2 * refund), percent=50),
        ],
        forbidden=["cancel_order"],
    )
    assert f"{refund:.2f}" in rig_chat.last.content
