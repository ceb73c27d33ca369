// The page's code run by Node as the front end would run it (no mini-program runtime needed):
//   AUTH_CODE=$(minicloud sandbox login test --user 2088102150477652)
//   NODE_EXTRA_CA_CERTS=$(minicloud ca) node miniprogram/try-in-node.js https://fnshop.test.localhost:8443 $AUTH_CODE
const orders = require('./orders');

(async () => {
  const [url, code] = process.argv.slice(2);
  orders.connect(url, code);
  const id = await orders.placeOrder('matcha latte', 18);
  const mine = await orders.myOrders();
  const stats = await orders.stats();
  console.log(JSON.stringify({ placed: id, mine, stats }));
})().catch((err) => { console.error(`${err.code || 'error'}: ${err.message}`); process.exit(1); });
