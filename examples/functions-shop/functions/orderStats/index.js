// The data API from a function: `context.cloud` is the SDK with the env's server credential (it reads
// every member's orders; the collection's rule binds front ends only). Called by the mini-program with
// cloud.callFunction({ name: 'orderStats' }), whose caller arrives as event.auth.uid.
exports.main = async (event, context) => {
  const orders = context.cloud.database().collection('orders');
  const { total } = await orders.count();
  const { data } = await orders.orderBy('total', 'desc').limit(1).get();
  return { orders: total, biggest: data[0] ? data[0].total : null, askedBy: event.auth ? event.auth.uid : null };
};
