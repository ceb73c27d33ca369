// A mini-program page's data code (Alipay or WeChat): the member's orders through the data API.
// The SDK file comes from `minicloud codegen cloud-sdk --lang js --out miniprogram/minicloud-cloud.js`.
const cloud = require('./minicloud-cloud');

function connect(url, authCode, getAuthCode) {
  // in a page: my.getAuthCode({ scopes: 'auth_base', success: (r) => connect(URL, r.authCode) })
  cloud.init({ url, code: authCode, getAuthCode });
  return cloud;
}

async function placeOrder(item, total) {
  const { _id } = await cloud.database().collection('orders').add({ data: { item, total, placed: Date.now() } });
  return _id;
}

async function myOrders() {
  const _ = cloud.database().command;
  const { data } = await cloud.database().collection('orders').where({ total: _.gt(0) })
    .orderBy('placed', 'desc').limit(20).get();
  return data;
}

async function stats() {
  const { result } = await cloud.callFunction({ name: 'orderStats' });
  return result;
}

module.exports = { connect, placeOrder, myOrders, stats };
