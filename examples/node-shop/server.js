// A tiny shop backend: products in the environment's MariaDB (credentials injected by minicloud).
const http = require('http');
const mysql = require('mysql2/promise');

const pool = mysql.createPool({
  host: process.env.MYSQL_HOST,
  port: Number(process.env.MYSQL_PORT || 3306),
  user: process.env.MYSQL_USER,
  password: process.env.MYSQL_PASSWORD,
  database: process.env.MYSQL_DATABASE,
  connectionLimit: 5,
});

async function migrate() {
  await pool.query(`CREATE TABLE IF NOT EXISTS products (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    price_cents INT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
  )`);
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => { try { resolve(JSON.parse(data || '{}')); } catch (e) { reject(e); } });
  });
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/healthz') {
      await pool.query('SELECT 1');
      return send(res, 200, { ok: true });
    }
    if (req.url === '/products' && req.method === 'POST') {
      const { name, price_cents } = await readJson(req);
      const [result] = await pool.query(
        'INSERT INTO products (name, price_cents) VALUES (?, ?)', [name, price_cents]);
      console.log(`added product ${result.insertId} ${name}`);
      return send(res, 201, { id: result.insertId, name, price_cents });
    }
    if (req.url === '/products') {
      const [rows] = await pool.query('SELECT id, name, price_cents FROM products ORDER BY id');
      return send(res, 200, rows);
    }
    if (req.url === '/') {
      return send(res, 200, {
        app: process.env.MINICLOUD_APP, env: process.env.MINICLOUD_ENV,
        release: process.env.MINICLOUD_RELEASE, message: 'welcome to the shop',
      });
    }
    send(res, 404, { error: 'not found' });
  } catch (err) {
    console.error(`error on ${req.method} ${req.url}: ${err.message}`);
    send(res, 500, { error: err.message });
  }
});

migrate()
  .then(() => server.listen(Number(process.env.PORT || 3000), () => {
    console.log(`shop ${process.env.MINICLOUD_RELEASE} listening on ${process.env.PORT || 3000}`);
  }))
  .catch((err) => { console.error(`cannot prepare the database: ${err.message}`); process.exit(1); });

process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
