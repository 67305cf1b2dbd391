from django.db import models


class Order(models.Model):
    sku = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="new")
    job_id = models.CharField(max_length=64, blank=True)
    receipt_sent = models.BooleanField(default=False)


class Stock(models.Model):
    sku = models.CharField(max_length=40, unique=True)
    quantity = models.IntegerField(default=0)
