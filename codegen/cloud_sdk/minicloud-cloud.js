/*
 * minicloud-cloud.js - the client of minicloud's data API (docs/data-api.md) for mini-program front ends
 * (Alipay `my.request`, WeChat `wx.request`), cloud functions and Node apps (`fetch`).
 *
 *   const cloud = require('./minicloud-cloud')
 *   cloud.init({ url, code, getAuthCode })           // a front end: an auth code from my.getAuthCode
 *   cloud.init()                                     // a function / Node: MINICLOUD_DATA_URL/_KEY/_SECRET
 *   const db = cloud.database(), _ = db.command
 *   await db.collection('orders').where({ total: _.gt(5) }).orderBy('created', 'desc').limit(10).get()
 *
 * One file, no dependencies, nothing of Node loaded at import time. Requests are signed with
 * HMAC-SHA256 implemented below in plain JavaScript; in Node the `crypto` module is used when present
 * (init option `crypto: 'pure'` forces the plain path). Every asynchronous call returns a promise, or
 * calls `success`/`fail`/`complete` when one of those is given.
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  else root.minicloudCloud = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  // ---- bytes: UTF-8, hex, base64 --------------------------------------------------------------------

  function utf8(s) {
    var out = [], i, c, d;
    for (i = 0; i < s.length; i++) {
      c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xe000) {
        d = c < 0xdc00 && i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
        if (d >= 0xdc00 && d < 0xe000) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; } else c = 0xfffd;
      }
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | c >> 6, 0x80 | c & 63);
      else if (c < 0x10000) out.push(0xe0 | c >> 12, 0x80 | c >> 6 & 63, 0x80 | c & 63);
      else out.push(0xf0 | c >> 18, 0x80 | c >> 12 & 63, 0x80 | c >> 6 & 63, 0x80 | c & 63);
    }
    return new Uint8Array(out);
  }

  function bytesOf(x) {
    if (x == null) return new Uint8Array(0);
    if (typeof x === 'string') return utf8(x);
    if (x instanceof Uint8Array) return x;
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (x instanceof ArrayBuffer || Object.prototype.toString.call(x) === '[object ArrayBuffer]') return new Uint8Array(x);
    throw cloudError('invalid_argument', 'fileContent must be a string, an ArrayBuffer or a typed array');
  }

  function hex(b) {
    for (var s = '', i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return s;
  }

  var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

  function b64encode(b) {
    var s = '', i, n;
    for (i = 0; i < b.length; i += 3) {
      n = b[i] << 16 | (i + 1 < b.length ? b[i + 1] << 8 : 0) | (i + 2 < b.length ? b[i + 2] : 0);
      s += B64[n >> 18 & 63] + B64[n >> 12 & 63] + (i + 1 < b.length ? B64[n >> 6 & 63] : '=') +
        (i + 2 < b.length ? B64[n & 63] : '=');
    }
    return s;
  }

  function b64decode(s) {
    var out = [], bits = 0, acc = 0, i, v;
    s = String(s).replace(/[\s=]/g, '').replace(/-/g, '+').replace(/_/g, '/');
    for (i = 0; i < s.length; i++) {
      v = B64.indexOf(s[i]);
      if (v < 0) throw cloudError('invalid_argument', 'the session secret is not base64');
      acc = acc << 6 | v; bits += 6;
      if (bits >= 8) { bits -= 8; out.push(acc >> bits & 255); }
    }
    return new Uint8Array(out);
  }

  // ---- SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) ----------------------------------------------------

  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];

  function sha256(msg) {
    var n = msg.length, total = Math.ceil((n + 9) / 64) * 64, m = new Uint8Array(total), w = new Array(64);
    var H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var i, j, off, a, b, c, d, e, f, g, h, t1, t2, hi = Math.floor(n / 0x20000000), lo = (n * 8) >>> 0;
    m.set(msg); m[n] = 0x80;
    for (i = 0; i < 4; i++) { m[total - 8 + i] = hi >>> (24 - 8 * i) & 255; m[total - 4 + i] = lo >>> (24 - 8 * i) & 255; }
    function r(x, k) { return x >>> k | x << (32 - k); }
    for (off = 0; off < total; off += 64) {
      for (i = 0; i < 16; i++) j = off + 4 * i, w[i] = m[j] << 24 | m[j + 1] << 16 | m[j + 2] << 8 | m[j + 3];
      for (i = 16; i < 64; i++) {
        a = w[i - 15]; b = w[i - 2];
        w[i] = (w[i - 16] + (r(a, 7) ^ r(a, 18) ^ a >>> 3) + w[i - 7] + (r(b, 17) ^ r(b, 19) ^ b >>> 10)) | 0;
      }
      a = H[0]; b = H[1]; c = H[2]; d = H[3]; e = H[4]; f = H[5]; g = H[6]; h = H[7];
      for (i = 0; i < 64; i++) {
        t1 = (h + (r(e, 6) ^ r(e, 11) ^ r(e, 25)) + (e & f ^ ~e & g) + K[i] + w[i]) | 0;
        t2 = ((r(a, 2) ^ r(a, 13) ^ r(a, 22)) + (a & b ^ a & c ^ b & c)) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0; H[3] = (H[3] + d) | 0;
      H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0; H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
    }
    var out = new Uint8Array(32);
    for (i = 0; i < 32; i++) out[i] = H[i >> 2] >>> (24 - 8 * (i & 3)) & 255;
    return out;
  }

  function hmacSha256(key, msg) {
    if (key.length > 64) key = sha256(key);
    var inner = new Uint8Array(64 + msg.length), outer = new Uint8Array(96), i;
    for (i = 0; i < 64; i++) { inner[i] = (key[i] || 0) ^ 0x36; outer[i] = (key[i] || 0) ^ 0x5c; }
    inner.set(msg, 64); outer.set(sha256(inner), 64);
    return sha256(outer);
  }

  // ---- the Node side, loaded only when used --------------------------------------------------------------

  function isNode() {
    return typeof process === 'object' && !!process && !!process.versions && !!process.versions.node;
  }

  function builtin(name) {
    if (!isNode()) return null;
    try {
      if (typeof process.getBuiltinModule === 'function') return process.getBuiltinModule(name) || null;
      if (typeof module === 'object' && module && typeof module.require === 'function') return module.require(name);
    } catch (e) { /* not Node after all */ }
    return null;
  }

  function digests(mode) {
    var c = mode === 'pure' ? null : builtin('crypto');
    if (mode === 'node' && !c) throw cloudError('invalid_config', 'crypto: "node" needs Node\'s crypto module');
    if (!c) return { name: 'pure', sha256: sha256, hmac: hmacSha256 };
    return {
      name: 'node',
      sha256: function (b) { return new Uint8Array(c.createHash('sha256').update(b).digest()); },
      hmac: function (k, b) { return new Uint8Array(c.createHmac('sha256', k).update(b).digest()); }
    };
  }

  function randomHex(nbytes) {
    var b = new Uint8Array(nbytes), i, g = typeof globalThis !== 'undefined' ? globalThis.crypto : null;
    if (g && typeof g.getRandomValues === 'function') g.getRandomValues(b);
    else for (i = 0; i < nbytes; i++) b[i] = Math.floor(Math.random() * 256);
    return hex(b);
  }

  /** The X-Cloud-* signature headers of one request (docs/data-api.md, "Signature"). */
  function signHeaders(o) {
    var d = digests(o.crypto), ts = String(o.timestamp), nonce = String(o.nonce);
    var text = String(o.method).toUpperCase() + '\n' + o.path + '\n' + ts + '\n' + nonce + '\n' +
      hex(d.sha256(bytesOf(o.body)));
    return {
      'X-Cloud-Timestamp': ts,
      'X-Cloud-Nonce': nonce,
      'X-Cloud-Signature': b64encode(d.hmac(bytesOf(o.secret), utf8(text)))
    };
  }

  // ---- errors, callbacks, URLs ---------------------------------------------------------------------------

  function cloudError(code, message, status) {
    var e = new Error(message);
    e.code = code; e.status = status || 0; e.errMsg = message;
    return e;
  }

  function settle(promise, o) {
    if (!o || !(o.success || o.fail || o.complete)) return promise;
    promise.then(function (r) { if (o.success) o.success(r); if (o.complete) o.complete(r); },
      function (e) { if (o.fail) o.fail(e); if (o.complete) o.complete(e); });
  }

  function attempt(fn, o) {
    var p;
    try { p = Promise.resolve(fn()); } catch (e) { p = Promise.reject(e); }
    return settle(p, o);
  }

  /** Percent-encoding that leaves only A-Z a-z 0-9 - _ . ~ (and '/' when keepSlash) as they are. */
  function enc(s, keepSlash) {
    var e = encodeURIComponent(String(s)).replace(/[!'()*]/g, function (ch) {
      return '%' + ch.charCodeAt(0).toString(16).toUpperCase();
    });
    return keepSlash ? e.replace(/%2F/g, '/') : e;
  }

  function splitUrl(url) {
    var m = /^(https?:\/\/[^/?#]+)(\/[^?#]*)?/i.exec(String(url || ''));
    if (!m) throw cloudError('invalid_config', 'url must be like https://APP.ENV.localhost:PORT/cloud/v1/');
    var path = (m[2] || '').replace(/\/+$/, '');
    if (!/\/cloud\/v1$/.test(path)) path += '/cloud/v1';
    return { origin: m[1], path: path };
  }

  // ---- transports: my.request, wx.request, fetch ---------------------------------------------------------

  function platform() {
    if (typeof my !== 'undefined' && my && typeof my.request === 'function') return { kind: 'my', api: my };
    if (typeof wx !== 'undefined' && wx && typeof wx.request === 'function') return { kind: 'wx', api: wx };
    return null;
  }

  function arrayBuffer(b) { return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); }

  function transport(req, timeout) {
    var p = platform();
    if (p) {
      return new Promise(function (resolve, reject) {
        var o = {
          url: req.url, method: req.method, dataType: 'text', responseType: 'text', timeout: timeout,
          data: req.body == null ? undefined : typeof req.body === 'string' ? req.body : arrayBuffer(req.body),
          success: function (res) { resolve({ status: res.statusCode || res.status, text: res.data }); },
          fail: function (res) {
            // Alipay reports an HTTP error status through `fail`, with the answer when it has one.
            var status = res && (res.status || res.statusCode);
            if (status) resolve({ status: status, text: res.data });
            else reject(cloudError('network_error', (res && (res.errorMessage || res.errMsg)) || 'the request failed'));
          }
        };
        o[p.kind === 'my' ? 'headers' : 'header'] = req.headers;
        p.api.request(o);
      });
    }
    if (typeof fetch !== 'function') return Promise.reject(cloudError('invalid_config', 'no my.request, wx.request, fetch'));
    var init = { method: req.method, headers: req.headers, body: req.body == null ? undefined : req.body };
    if (timeout && typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(timeout);
    return fetch(req.url, init).then(function (res) {
      return res.text().then(function (text) { return { status: res.status, text: text }; });
    }, function (e) {
      throw cloudError('network_error', (e && e.cause && e.cause.message) || (e && e.message) || 'fetch failed');
    });
  }

  function answer(res) {
    var body = res.text;
    if (typeof body === 'string') {
      try { body = body ? JSON.parse(body) : {}; } catch (e) { body = null; }
    }
    if (res.status >= 200 && res.status < 300 && body && typeof body === 'object') return body;
    var err = body && body.error;
    if (err && err.code) throw cloudError(err.code, err.message || err.code, res.status);
    throw cloudError('http_' + res.status, 'the data API answered HTTP ' + res.status + ' without a JSON body', res.status);
  }

  // ---- the client ----------------------------------------------------------------------------------------

  function Cloud(options) {
    this._ready = false;
    if (options) this.init(options);
  }

  /**
   * init({ url, code, getAuthCode, session, serverKey, serverSecret, onBehalfOf, crypto, timeout }).
   * A front end passes `code` (from my.getAuthCode) and optionally `getAuthCode()` -> code | Promise<code>
   * to renew an expired session; `session` is a saved answer of auth/session. Without any of these the
   * server credential is read from MINICLOUD_DATA_KEY / MINICLOUD_DATA_SECRET, and `url` from
   * MINICLOUD_DATA_URL, when the process has them.
   */
  Cloud.prototype.init = function (o) {
    o = o || {};
    var env = isNode() && process.env ? process.env : {};
    var user = o.code || o.session || o.getAuthCode;
    this._url = splitUrl(o.url || env.MINICLOUD_DATA_URL);
    this._key = o.serverKey || (user ? null : env.MINICLOUD_DATA_KEY) || null;
    this._secret = this._key ? (o.serverSecret || (o.serverKey ? null : env.MINICLOUD_DATA_SECRET)) : null;
    if (this._key && this._secret == null) throw cloudError('invalid_config', 'serverKey needs serverSecret');
    this._code = o.code || null;
    this._getAuthCode = o.getAuthCode || null;
    this._session = null;
    this._renewing = null;
    if (o.session) this._keepSession(typeof o.session === 'object' ? o.session : { session: o.session, secret: o.secret });
    this._onBehalfOf = o.onBehalfOf || null;
    this._crypto = o.crypto || 'auto';
    this._timeout = o.timeout || 30000;
    this._ready = true;
    return this;
  };

  Cloud.prototype._keepSession = function (s) {
    if (!s || !s.session || !s.secret) throw cloudError('invalid_config', 'a session needs its session id and secret');
    this._session = { id: s.session, secret: b64decode(s.secret), uid: s.uid || null, expiresAt: s.expires_at || 0 };
    return s;
  };

  /** Trades an auth code for a session: { session, secret, uid, expires_at }. */
  Cloud.prototype.login = function (code, o) {
    var self = this;
    return attempt(function () {
      if (code === self._code) self._code = null;  // an auth code is good for one try
      return self._send('POST', 'auth/session', JSON.stringify({ code: code }), false).then(function (s) {
        return self._keepSession(s);
      });
    }, o);
  };

  Cloud.prototype._renew = function () {
    var self = this;
    if (!self._renewing) {
      self._renewing = Promise.resolve(self._getAuthCode()).then(function (code) {
        if (!code) throw cloudError('no_session', 'getAuthCode gave no auth code');
        return self.login(code);
      }).then(function (s) { self._renewing = null; return s; }, function (e) { self._renewing = null; throw e; });
    }
    return self._renewing;
  };

  Cloud.prototype._identity = function () {
    if (!this._ready) return Promise.reject(cloudError('invalid_config', 'call cloud.init() first'));
    if (this._key) return Promise.resolve();
    var s = this._session, stale = s && s.expiresAt && Date.now() / 1000 >= s.expiresAt - 30;
    if (s && !(stale && this._getAuthCode)) return Promise.resolve();
    if (this._code) return this.login(this._code);
    if (this._getAuthCode) return this._renew();
    return Promise.reject(cloudError('no_session', 'cloud.init() was given no code, session nor server key'));
  };

  /** One signed request; `body` is a string (JSON) or bytes. Resolves the answer's JSON. */
  Cloud.prototype._send = function (method, rel, body, signed) {
    var path = this._url.path + '/' + rel, headers = {}, bytes = body == null ? null : bytesOf(body);
    if (body != null) headers['Content-Type'] = typeof body === 'string' ? 'application/json' : 'application/octet-stream';
    if (signed) {
      var secret;
      if (this._key) {
        headers['X-Cloud-Server-Key'] = this._key; secret = this._secret;
        if (this._onBehalfOf) headers['X-Cloud-On-Behalf-Of'] = this._onBehalfOf;
      } else {
        headers['X-Cloud-Session'] = this._session.id; secret = this._session.secret;
      }
      var sig = signHeaders({
        method: method, path: path, body: bytes, secret: secret, crypto: this._crypto,
        timestamp: Math.floor(Date.now() / 1000), nonce: randomHex(16)
      });
      for (var h in sig) headers[h] = sig[h];
    }
    // A front end's request API sends the string as given; fetch gets the very bytes that were hashed.
    var payload = body == null ? null : typeof body === 'string' && platform() ? body : bytes;
    return transport({ url: this._url.origin + path, method: method, headers: headers, body: payload }, this._timeout)
      .then(answer);
  };

  /** A signed request; an expired session is renewed through getAuthCode and the request sent once more. */
  Cloud.prototype._call = function (method, rel, body) {
    var self = this;
    return self._identity().then(function () { return self._send(method, rel, body, true); }).catch(function (e) {
      if (e.code !== 'session_expired' || self._key || !self._getAuthCode) throw e;
      return self._renew().then(function () { return self._send(method, rel, body, true); });
    });
  };

  Cloud.prototype._json = function (rel, obj) { return this._call('POST', rel, JSON.stringify(obj)); };

  Cloud.prototype.database = function () { return new Database(this); };

  function fileIds(list) {
    if (!Array.isArray(list)) throw cloudError('invalid_argument', 'fileList must be an array of fileIDs');
    return list.map(function (f) { return f && typeof f === 'object' ? f.fileID : f; });
  }

  function readFile(filePath) {
    var p = platform();
    if (p && typeof p.api.getFileSystemManager === 'function') {
      return new Promise(function (resolve, reject) {
        p.api.getFileSystemManager().readFile({
          filePath: filePath,
          success: function (res) { resolve(bytesOf(res.data)); },
          fail: function (res) {
            reject(cloudError('invalid_argument', (res && (res.errorMessage || res.errMsg)) || 'cannot read ' + filePath));
          }
        });
      });
    }
    var fs = builtin('fs');
    if (!fs) return Promise.reject(cloudError('invalid_argument', 'filePath needs a file system; pass fileContent'));
    return fs.promises.readFile(filePath).then(function (buf) { return new Uint8Array(buf); });
  }

  /** uploadFile({ cloudPath, filePath | fileContent }) -> { fileID, size, contentType } */
  Cloud.prototype.uploadFile = function (o) {
    var self = this;
    return attempt(function () {
      if (!o || !o.cloudPath) throw cloudError('invalid_argument', 'uploadFile needs cloudPath');
      var bytes = o.filePath ? readFile(o.filePath) : Promise.resolve(bytesOf(o.fileContent));
      return bytes.then(function (b) {
        return self._call('POST', 'files?path=' + enc(String(o.cloudPath).replace(/^\/+/, ''), true), b);
      });
    }, o);
  };

  /** getTempFileURL({ fileList, maxAge }) -> { fileList: [{ fileID, tempFileURL, maxAge }] } */
  Cloud.prototype.getTempFileURL = function (o) {
    var self = this;
    return attempt(function () {
      var body = { fileList: fileIds(o && o.fileList) };
      if (o.maxAge != null) body.maxAge = o.maxAge;
      return self._json('files/temp-url', body);
    }, o);
  };

  /** deleteFile({ fileList }) -> { fileList: [{ fileID, status }] } */
  Cloud.prototype.deleteFile = function (o) {
    var self = this;
    return attempt(function () { return self._json('files/delete', { fileList: fileIds(o && o.fileList) }); }, o);
  };

  /** listFiles({ prefix }) -> { files } (server credential only) */
  Cloud.prototype.listFiles = function (o) {
    var self = this;
    return attempt(function () { return self._call('GET', 'files?prefix=' + enc((o && o.prefix) || '', true), null); }, o);
  };

  /** callFunction({ name, data }) -> { result } */
  Cloud.prototype.callFunction = function (o) {
    var self = this;
    return attempt(function () {
      if (!o || !o.name) throw cloudError('invalid_argument', 'callFunction needs name');
      return self._json('functions/' + enc(o.name), { data: o.data === undefined ? {} : o.data });
    }, o);
  };

  // ---- db.command: MongoDB operator objects ------------------------------------------------------------

  function isPlain(v) {
    return !!v && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof Date);
  }

  function isOperator(v) {
    var keys = isPlain(v) ? Object.keys(v) : [];
    return keys.length > 0 && keys.every(function (k) { return k.charAt(0) === '$'; });
  }

  function chainable(o) {
    // `_.gt(1).and(_.lt(9))` -> { $gt: 1, $lt: 9 }; a non-enumerable method, so JSON never sees it.
    Object.defineProperty(o, 'and', {
      value: function () {
        var r = {}, all = [this].concat([].slice.call(arguments)), i, k;
        for (i = 0; i < all.length; i++) for (k in all[i]) r[k] = all[i][k];
        return chainable(r);
      }
    });
    return o;
  }

  function op(name) {
    return function (v) { var o = {}; o['$' + name] = v; return chainable(o); };
  }

  function listOp(name) {
    return function () {
      var a = arguments.length === 1 && Array.isArray(arguments[0]) ? arguments[0] : [].slice.call(arguments);
      return op(name)(a);
    };
  }

  function eachOp(name) {
    // push / addToSet of an array adds every element; push({ each, position, slice, sort }) as in MongoDB.
    return function (v) {
      if (Array.isArray(v)) return op(name)({ $each: v });
      if (isPlain(v) && Array.isArray(v.each)) {
        var o = { $each: v.each };
        ['position', 'slice', 'sort'].forEach(function (k) { if (v[k] !== undefined) o['$' + k] = v[k]; });
        return op(name)(o);
      }
      return op(name)(v);
    };
  }

  var command = {
    eq: op('eq'), neq: op('ne'), gt: op('gt'), gte: op('gte'), lt: op('lt'), lte: op('lte'),
    in: op('in'), nin: op('nin'), exists: op('exists'), size: op('size'), all: op('all'),
    elemMatch: op('elemMatch'), not: op('not'),
    and: listOp('and'), or: listOp('or'), nor: listOp('nor'),
    set: op('set'), inc: op('inc'), mul: op('mul'), min: op('min'), max: op('max'), rename: op('rename'),
    remove: function () { return op('unset')(''); },
    push: eachOp('push'), addToSet: eachOp('addToSet'), pull: op('pull'), pullAll: op('pullAll'),
    pop: function () { return op('pop')(1); }, shift: function () { return op('pop')(-1); }
  };

  /** A filter as MongoDB reads it: a field-level `_.or(_.lt(1), _.gt(9))` becomes a top-level $or. */
  function toFilter(where) {
    if (!isPlain(where)) throw cloudError('invalid_argument', 'where() takes an object');
    var out = {}, lifted = [];
    Object.keys(where).forEach(function (k) {
      var v = where[k], l = isPlain(v) && Object.keys(v).length === 1 && Object.keys(v)[0];
      if (k.charAt(0) !== '$' && (l === '$or' || l === '$and' || l === '$nor') && Array.isArray(v[l]) &&
          v[l].every(isOperator)) {
        var c = {};
        c[l] = v[l].map(function (x) { var o = {}; o[k] = x; return o; });
        lifted.push(c);
      } else out[k] = v;
    });
    if (!lifted.length) return out;
    if (Object.keys(out).length) lifted.unshift(out);
    return lifted.length === 1 ? lifted[0] : { $and: lifted };
  }

  /**
   * An update as MongoDB reads it. `{ a: 1, b: { c: 2 }, n: _.inc(1) }` sets a and b.c and increments n
   * (nested objects merge, as in the mini-program clouds; `_.set({...})` replaces a whole object). An object
   * whose keys are all operators (`{ $set: {...}, $inc: {...} }`) is sent as it is.
   */
  function toUpdate(data) {
    if (!isPlain(data)) throw cloudError('invalid_argument', 'update() takes { data: { ... } }');
    if (isOperator(data)) return data;
    var out = {};
    (function walk(obj, prefix) {
      Object.keys(obj).forEach(function (k) {
        var v = obj[k], path = prefix + k;
        if (v === undefined) return;
        if (isOperator(v)) Object.keys(v).forEach(function (o) { (out[o] = out[o] || {})[path] = v[o]; });
        else if (isPlain(v) && Object.keys(v).length) walk(v, path + '.');
        else (out.$set = out.$set || {})[path] = v;
      });
    })(data, '');
    return out;
  }

  // ---- database, collections, queries, documents -------------------------------------------------------

  function Database(cloud) { this._cloud = cloud; this.command = command; }
  Database.prototype.collection = function (name) {
    if (!name || typeof name !== 'string') throw cloudError('invalid_argument', 'collection() takes a name');
    return new Collection(this._cloud, name);
  };
  Database.prototype.RegExp = function (o) {
    var r = { $regex: o.regexp };
    if (o.options) r.$options = o.options;
    return r;
  };
  /** listCollections() -> { collections: [{ name, count }] } */
  Database.prototype.listCollections = function (o) {
    var cloud = this._cloud;
    return attempt(function () { return cloud._call('GET', 'db', null); }, o);
  };

  function Query(cloud, name, q) { this._cloud = cloud; this._name = name; this._q = q || { filter: {} }; }

  Query.prototype._with = function (k, v) {
    var q = {}, key;
    for (key in this._q) q[key] = this._q[key];
    q[k] = v;
    return new Query(this._cloud, this._name, q);
  };
  Query.prototype._rel = function (verb) { return 'db/' + enc(this._name) + '/' + verb; };

  Query.prototype.where = function (filter) { return this._with('filter', toFilter(filter)); };
  Query.prototype.orderBy = function (field, order) {
    var dir = String(order || 'asc').toLowerCase();
    if (dir !== 'asc' && dir !== 'desc') throw cloudError('invalid_argument', 'orderBy() takes "asc" or "desc"');
    return this._with('sort', (this._q.sort || []).concat([[field, dir === 'asc' ? 1 : -1]]));
  };
  function wholeNumber(name) {
    return function (n) {
      if (typeof n !== 'number' || n < 0 || n % 1) throw cloudError('invalid_argument', name + '() takes a whole number >= 0');
      return this._with(name, n);
    };
  }
  Query.prototype.skip = wholeNumber('skip');
  Query.prototype.limit = wholeNumber('limit');
  Query.prototype.field = function (projection) {
    if (!isPlain(projection)) throw cloudError('invalid_argument', 'field() takes an object');
    return this._with('projection', projection);
  };

  /** get() -> { data: [...] } */
  Query.prototype.get = function (o) {
    var self = this;
    return attempt(function () { return self._cloud._json(self._rel('find'), self._q); }, o);
  };
  /** count() -> { total } */
  Query.prototype.count = function (o) {
    var self = this;
    return attempt(function () {
      return self._cloud._json(self._rel('count'), { filter: self._q.filter })
        .then(function (r) { return { total: r.total }; });
    }, o);
  };
  /** update({ data }) -> { stats: { updated } } for every document the filter matches */
  Query.prototype.update = function (o) {
    var self = this;
    return attempt(function () {
      return self._cloud._json(self._rel('update'), { filter: self._q.filter, update: toUpdate(o && o.data), multi: true })
        .then(function (r) { return { stats: { updated: r.updated } }; });
    }, o);
  };
  /** remove() -> { stats: { removed } } for every document the filter matches */
  Query.prototype.remove = function (o) {
    var self = this;
    return attempt(function () {
      return self._cloud._json(self._rel('remove'), { filter: self._q.filter, multi: true })
        .then(function (r) { return { stats: { removed: r.removed } }; });
    }, o);
  };

  function Collection(cloud, name) { Query.call(this, cloud, name); }
  Collection.prototype = Object.create(Query.prototype);
  Collection.prototype.constructor = Collection;

  /** add({ data: doc }) -> { _id }; add({ data: [doc, ...] }) -> { ids } */
  Collection.prototype.add = function (o) {
    var self = this;
    return attempt(function () {
      var data = o && o.data;
      if (!data || typeof data !== 'object') throw cloudError('invalid_argument', 'add() takes { data: doc | [doc, ...] }');
      return self._cloud._json(self._rel('add'), { data: data }).then(function (r) {
        return Array.isArray(data) ? { ids: r.ids } : { _id: r.ids && r.ids[0] };
      });
    }, o);
  };
  Collection.prototype.doc = function (id) { return new Doc(this, id); };

  function Doc(coll, id) { this._coll = coll; this._id = id; }
  Doc.prototype._json = function (verb, body) { return this._coll._cloud._json(this._coll._rel(verb), body); };
  /** get() -> { data: doc | null } */
  Doc.prototype.get = function (o) {
    var self = this;
    return attempt(function () {
      return self._json('find', { filter: { _id: self._id } }).then(function (r) {
        return { data: (r.data && r.data[0]) || null };
      });
    }, o);
  };
  /** update({ data }) -> { stats: { updated } } */
  Doc.prototype.update = function (o) {
    var self = this;
    return attempt(function () {
      return self._json('update', { filter: { _id: self._id }, update: toUpdate(o && o.data), multi: false })
        .then(function (r) { return { stats: { updated: r.updated } }; });
    }, o);
  };
  /** remove() -> { stats: { removed } } */
  Doc.prototype.remove = function (o) {
    var self = this;
    return attempt(function () {
      return self._json('remove', { filter: { _id: self._id }, multi: false })
        .then(function (r) { return { stats: { removed: r.removed } }; });
    }, o);
  };

  // ---- the module: a ready instance, plus the parts for tests and tools ------------------------------

  var cloud = new Cloud();
  cloud.Cloud = Cloud;
  cloud.signHeaders = signHeaders;
  cloud.crypto = {
    sha256: function (b, mode) { return digests(mode).sha256(bytesOf(b)); },
    hmacSha256: function (k, b, mode) { return digests(mode).hmac(bytesOf(k), bytesOf(b)); },
    backend: function (mode) { return digests(mode).name; },
    hex: hex, base64: b64encode, fromBase64: b64decode, utf8: utf8
  };
  return cloud;
});
