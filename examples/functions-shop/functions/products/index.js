// Lists or adds products in the env's MariaDB: the function gets the app's injected settings.
const mysql = require('mysql2/promise');

let pool; // kept while the instance stays with this function (keep_alive)
function db() {
  pool = pool || mysql.createPool({
    host: process.env.MYSQL_HOST, port: Number(process.env.MYSQL_PORT), user: process.env.MYSQL_USER,
    password: process.env.MYSQL_PASSWORD, database: process.env.MYSQL_DATABASE, connectionLimit: 2,
  });
  return pool;
}

exports.main = async (event, context) => {
  await db().query(`CREATE TABLE IF NOT EXISTS fn_products (
    id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, price_cents INT NOT NULL)`);
  if (event.add) {
    const [r] = await db().query('INSERT INTO fn_products (name, price_cents) VALUES (?, ?)',
      [event.add.name, event.add.price_cents]);
    console.log(`added product ${r.insertId} for request ${context.requestId}`);
  }
  const [rows] = await db().query('SELECT id, name, price_cents FROM fn_products ORDER BY id');
  return { products: rows };
};
