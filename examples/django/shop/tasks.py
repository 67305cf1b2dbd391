"""The shop's background work: aioq tasks (sync with the ORM, async with the async
ORM) and one task of Django's own task framework, all run by the same workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from mysite.aioq_app import app

from aioq import Context  # noqa: TC001  # read at run time: the task's context parameter
from shop.models import Order, Stock

if TYPE_CHECKING:
    from django_tasks import task
else:
    try:
        from django.tasks import task  # Django 6.0 and later
    except ImportError:  # Django 4.2 - 5.2: the django-tasks backport
        from django_tasks import task


@app.task(retries=2)
def fulfil_order(ctx: Context, order_id: int) -> str:
    """A sync task: runs in a worker thread, uses the ORM like a view does."""
    ctx.progress(0, 2, step="reserving stock")
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        stock, _ = Stock.objects.get_or_create(sku=order.sku)
        if stock.quantity < order.quantity:
            order.status = "backordered"
        else:
            Stock.objects.filter(pk=stock.pk).update(quantity=F("quantity") - order.quantity)
            order.status = "fulfilled"
        order.save(update_fields=["status"])
    ctx.progress(2, 2, step="done")
    return order.status


@app.task
async def email_receipt(order_id: int) -> str:
    """An async task: the async ORM, on the worker's event loop."""
    order = await Order.objects.aget(pk=order_id)
    order.receipt_sent = True
    await order.asave(update_fields=["receipt_sent"])
    return f"receipt for order {order.pk} ({order.status})"


@app.task
async def count_orders(status: str) -> int:
    return await Order.objects.filter(status=status).acount()


@task
def restock(sku: str, quantity: int) -> int:
    """A task of Django's task framework (``restock.enqueue(...)``), run by aioq."""
    if quantity <= 0:
        raise ValueError(f"cannot restock {quantity} of {sku}")
    stock, _ = Stock.objects.get_or_create(sku=sku)
    Stock.objects.filter(pk=stock.pk).update(quantity=F("quantity") + quantity)
    stock.refresh_from_db()
    return stock.quantity
