// Benchmark app: /healthz, /mark?id=N (one timestamped log line), /flood?n=N (N lines, fast).
const http = require('http');
const version = 'v0';
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/mark') {
    console.log(`mark ${url.searchParams.get('id')} ${Date.now()}`);
  } else if (url.pathname === '/flood') {
    const n = Number(url.searchParams.get('n') || 1000);
    const chunk = [];
    for (let i = 0; i < n; i++) {
      chunk.push(`flood ${i} ${Date.now()}`);
      if (chunk.length === 500) { process.stdout.write(chunk.join('\n') + '\n'); chunk.length = 0; }
    }
    if (chunk.length) process.stdout.write(chunk.join('\n') + '\n');
  }
  if (url.pathname === '/steady') {
    // `rate` lines a second for `seconds`, in 10 ms slices: a sustained flood, not a burst
    const rate = Number(url.searchParams.get('rate') || 10000);
    const seconds = Number(url.searchParams.get('seconds') || 3);
    const perTick = Math.ceil(rate / 100);
    let sent = 0;
    const total = rate * seconds;
    const timer = setInterval(() => {
      const chunk = [];
      for (let i = 0; i < perTick && sent < total; i++, sent++) chunk.push(`steady ${sent} ${Date.now()}`);
      process.stdout.write(chunk.join('\n') + '\n');
      if (sent >= total) clearInterval(timer);
    }, 10);
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ version }));
}).listen(Number(process.env.PORT || 3000), () => console.log(`benchapp ${process.env.MINICLOUD_RELEASE} up`));
