from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("sku", models.CharField(max_length=40)),
                ("quantity", models.PositiveIntegerField()),
                ("status", models.CharField(default="new", max_length=20)),
                ("job_id", models.CharField(blank=True, max_length=64)),
                ("receipt_sent", models.BooleanField(default=False)),
            ],
        ),
        migrations.CreateModel(
            name="Stock",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("sku", models.CharField(max_length=40, unique=True)),
                ("quantity", models.IntegerField(default=0)),
            ],
        ),
    ]
