"""Views: sync ones send with ``delay``/``apply_async`` after the transaction
commits; an async one reads with the async ORM."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from mysite.aioq_app import app

from shop.models import Order
from shop.tasks import email_receipt, fulfil_order, restock


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> HttpResponse:
    """Save the order and send its job only once the transaction commits: a worker
    never looks for an order that is not there yet (or was rolled back)."""
    data = json.loads(request.body)
    job_id = uuid.uuid4().hex
    try:
        with transaction.atomic():
            order = Order.objects.create(sku=data["sku"], quantity=data["quantity"], job_id=job_id)
            transaction.on_commit(lambda: fulfil_order.apply_async(args=[order.pk], job_id=job_id))
            if order.quantity <= 0:
                raise ValueError("quantity must be positive")
    except ValueError as exc:  # rolled back: on_commit never runs, nothing is sent
        return JsonResponse({"error": str(exc), "job": job_id}, status=400)
    body = {"order": order.pk, "job": job_id, "status": f"/jobs/{job_id}/"}
    return JsonResponse(body, status=201)


@require_GET
async def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = await Order.objects.filter(pk=order_id).afirst()
    if order is None:
        return JsonResponse({"error": "no such order"}, status=404)
    return JsonResponse(
        {"order": order.pk, "status": order.status, "receipt_sent": order.receipt_sent}
    )


@csrf_exempt
@require_POST
def send_receipt(request: HttpRequest, order_id: int) -> HttpResponse:
    job = email_receipt.delay(order_id)
    return JsonResponse({"job": job.id}, status=202)


@require_GET
def job_status(request: HttpRequest, job_id: str) -> HttpResponse:
    """Any job's state, progress, result or error, from its id."""
    info = app.job_sync(job_id).info()
    body: dict[str, Any] = {"job": job_id, "state": info.state.value, "task": info.task}
    if info.progress is not None:
        body["progress"] = {"current": info.progress.current, "total": info.progress.total}
    if info.state.value == "succeeded":
        body["result"] = info.result
    if info.error is not None:
        body["error"] = f"{info.error.type}: {info.error.message}"
    return JsonResponse(body)


@csrf_exempt
@require_POST
def restock_view(request: HttpRequest) -> HttpResponse:
    data = json.loads(request.body)
    result = restock.enqueue(data["sku"], data["quantity"])
    return JsonResponse({"result": result.id, "status": result.status}, status=202)


@require_GET
def restock_status(request: HttpRequest, result_id: str) -> HttpResponse:
    result = restock.get_result(result_id)
    body: dict[str, Any] = {"result": result.id, "status": result.status}
    if result.is_finished and not result.errors:
        body["stock"] = result.return_value
    if result.errors:
        body["error"] = result.errors[0].exception_class_path
    return JsonResponse(body)
