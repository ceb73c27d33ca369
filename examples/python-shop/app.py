"""A tiny shop backend: products in the environment's MariaDB (credentials injected by minicloud)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymysql


def connect():
    return pymysql.connect(host=os.environ["MYSQL_HOST"], port=int(os.environ.get("MYSQL_PORT", 3306)),
                           user=os.environ["MYSQL_USER"], password=os.environ["MYSQL_PASSWORD"],
                           database=os.environ["MYSQL_DATABASE"], autocommit=True)


def migrate():
    with connect() as db, db.cursor() as cur:
        cur.execute("""CREATE TABLE IF NOT EXISTS products (
            id INT AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(100) NOT NULL,
            price_cents INT NOT NULL)""")


class Shop(BaseHTTPRequestHandler):
    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            with connect() as db, db.cursor() as cur:
                cur.execute("SELECT 1")
            return self.send(200, {"ok": True})
        if self.path == "/products":
            with connect() as db, db.cursor() as cur:
                cur.execute("SELECT id, name, price_cents FROM products ORDER BY id")
                rows = [{"id": i, "name": n, "price_cents": p} for i, n, p in cur.fetchall()]
            return self.send(200, rows)
        if self.path == "/":
            return self.send(200, {"app": os.environ.get("MINICLOUD_APP"), "env": os.environ.get("MINICLOUD_ENV"),
                                   "release": os.environ.get("MINICLOUD_RELEASE")})
        self.send(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/products":
            return self.send(404, {"error": "not found"})
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with connect() as db, db.cursor() as cur:
            cur.execute("INSERT INTO products (name, price_cents) VALUES (%s, %s)", (body["name"], body["price_cents"]))
            new_id = cur.lastrowid
        print(f"added product {new_id} {body['name']}", flush=True)
        self.send(201, {"id": new_id, **body})


if __name__ == "__main__":
    migrate()
    port = int(os.environ.get("PORT", 8000))
    print(f"pyshop {os.environ.get('MINICLOUD_RELEASE')} listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Shop).serve_forever()
