// A QR-code trade through the env's sandbox open platform (alipay.js: `minicloud codegen
// alipay.trade.precreate --lang node`, unchanged; it needs the 当面付 package signed:
// `minicloud abilities grant test FACE_TO_FACE_PAYMENT`).
const { tradePrecreate } = require('./alipay');

exports.main = async (event) => {
  const result = await tradePrecreate(event.out_trade_no, event.total_amount || '9.90', event.subject || 'tea');
  return { out_trade_no: result.out_trade_no, qr_code: result.qr_code };
};
