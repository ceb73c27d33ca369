// The app beside the functions: a health check is all it needs here.
require('http').createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ app: process.env.MINICLOUD_APP, functions: ['products', 'precreate', 'hello'] }));
}).listen(Number(process.env.PORT || 3000));
