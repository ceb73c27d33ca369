from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price_cents = models.IntegerField()

    class Meta:
        db_table = "products"
        ordering = ["id"]
