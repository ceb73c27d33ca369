"""The shop's endpoints: products in the environment's MariaDB, through Django's ORM and mysqlclient."""

import json
import os

import MySQLdb
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Product


def healthz(request):
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    return JsonResponse({"ok": True})


def root(request):
    connection.ensure_connection()
    return JsonResponse({"app": os.environ.get("MINICLOUD_APP"), "env": os.environ.get("MINICLOUD_ENV"),
                         "release": os.environ.get("MINICLOUD_RELEASE"), "driver": "mysqlclient " + ".".join(map(str, MySQLdb.version_info[:3])),
                         "server": connection.connection.get_server_info()})


@csrf_exempt
def products(request):
    if request.method == "POST":
        body = json.loads(request.body or b"{}")
        product = Product.objects.create(name=body["name"], price_cents=int(body["price_cents"]))
        print(f"added product {product.id} {product.name}", flush=True)
        return JsonResponse({"id": product.id, "name": product.name, "price_cents": product.price_cents},
                            status=201)
    rows = [{"id": p.id, "name": p.name, "price_cents": p.price_cents} for p in Product.objects.all()]
    return JsonResponse(rows, safe=False)
