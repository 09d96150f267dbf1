// AWS Signature Version 4 for the bale console, in plain JavaScript.
//
// The page signs its own S3 requests: the secret key stays in this tab (sessionStorage) and
// only signatures travel. SHA-256 and HMAC are implemented here because crypto.subtle exists
// only in secure contexts (https or localhost), and the console is often opened over plain
// http on a LAN address. Requests are signed as the S3 port sees them: host = this page's
// host, path = the S3 path (the console strips its /api/s3 prefix before forwarding).
"use strict";

const BaleSig = (() => {
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  const enc = new TextEncoder();

  const rotr = (x, n) => (x >>> n) | (x << (32 - n));

  /** SHA-256 of a Uint8Array or string; returns 32 bytes. */
  function sha256(input) {
    const data = typeof input === "string" ? enc.encode(input) : input;
    const len = data.length;
    const padded = new Uint8Array(Math.ceil((len + 9) / 64) * 64);
    padded.set(data);
    padded[len] = 0x80;
    const dv = new DataView(padded.buffer);
    dv.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
    dv.setUint32(padded.length - 4, (len << 3) >>> 0);
    const h = new Uint32Array(H0);
    const w = new Uint32Array(64);
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + 4 * i);
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15], b = w[i - 2];
        const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
        const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0;
        d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d;
      h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const odv = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) odv.setUint32(4 * i, h[i]);
    return out;
  }

  /** HMAC-SHA256 (RFC 2104) of a message under a key (bytes or strings); returns 32 bytes. */
  function hmac(keyIn, msgIn) {
    let key = typeof keyIn === "string" ? enc.encode(keyIn) : keyIn;
    const msg = typeof msgIn === "string" ? enc.encode(msgIn) : msgIn;
    if (key.length > 64) key = sha256(key);
    const ipad = new Uint8Array(64 + msg.length);
    const opad = new Uint8Array(64 + 32);
    for (let i = 0; i < 64; i++) {
      const k = i < key.length ? key[i] : 0;
      ipad[i] = k ^ 0x36;
      opad[i] = k ^ 0x5c;
    }
    ipad.set(msg, 64);
    opad.set(sha256(ipad), 64);
    return sha256(opad);
  }

  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

  /** RFC 3986 encoding as SigV4 wants it (unreserved characters kept; "/" kept on request). */
  function uriEncode(s, keepSlash) {
    const e = encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
    return keepSlash ? e.replace(/%2F/g, "/") : e;
  }

  /** "/bucket/key" with each part encoded ("/" for the bucket list). */
  function s3Path(bucket, key) {
    if (!bucket) return "/";
    return "/" + uriEncode(bucket, false) + (key === undefined ? "" : "/" + uriEncode(key, true));
  }

  /** The canonical (sorted, encoded) query string of [[name, value], ...]. */
  function canonicalQuery(params) {
    return params
      .map(([k, v]) => [uriEncode(k, false), uriEncode(v === undefined ? "" : String(v), false)])
      .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0))
      .map(([k, v]) => k + "=" + v)
      .join("&");
  }

  /** "20260101T000000Z" */
  const amzDate = (d) => d.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");

  function signature(cred, date, canonicalRequest) {
    const day = date.slice(0, 8);
    const scope = `${day}/${cred.region}/s3/aws4_request`;
    const toSign = ["AWS4-HMAC-SHA256", date, scope, hex(sha256(canonicalRequest))].join("\n");
    let k = hmac("AWS4" + cred.secretKey, day);
    k = hmac(k, cred.region);
    k = hmac(k, "s3");
    k = hmac(k, "aws4_request");
    return { scope, sig: hex(hmac(k, toSign)) };
  }

  const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  const UNSIGNED = "UNSIGNED-PAYLOAD";

  /**
   * Headers for a signed request: {url, headers}. `payload` is "empty" (no body) or
   * "unsigned" (a streamed upload: x-amz-content-sha256 UNSIGNED-PAYLOAD, as S3 allows).
   */
  function sign(cred, method, path, params, payload, host, now) {
    const date = amzDate(now || new Date());
    const q = canonicalQuery(params || []);
    const bodyHash = payload === "unsigned" ? UNSIGNED : EMPTY_SHA256;
    const signed = "host;x-amz-content-sha256;x-amz-date";
    const canonical = [method, path, q, `host:${host}`, `x-amz-content-sha256:${bodyHash}`,
      `x-amz-date:${date}`, "", signed, bodyHash].join("\n");
    const { scope, sig } = signature(cred, date, canonical);
    return {
      query: q,
      headers: {
        "x-amz-date": date,
        "x-amz-content-sha256": bodyHash,
        authorization: `AWS4-HMAC-SHA256 Credential=${cred.accessKey}/${scope}, SignedHeaders=${signed}, Signature=${sig}`,
      },
    };
  }

  /** A presigned GET query string (signed host only), valid for `expiresS` seconds. */
  function presign(cred, method, path, params, host, expiresS, now) {
    const date = amzDate(now || new Date());
    const scope = `${date.slice(0, 8)}/${cred.region}/s3/aws4_request`;
    const all = (params || []).concat([
      ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
      ["X-Amz-Credential", `${cred.accessKey}/${scope}`],
      ["X-Amz-Date", date],
      ["X-Amz-Expires", String(expiresS)],
      ["X-Amz-SignedHeaders", "host"],
    ]);
    const q = canonicalQuery(all);
    const canonical = [method, path, q, `host:${host}`, "", "host", UNSIGNED].join("\n");
    const { sig } = signature(cred, date, canonical);
    return q + "&X-Amz-Signature=" + sig;
  }

  return { sha256, hmac, hex, uriEncode, s3Path, canonicalQuery, sign, presign, amzDate };
})();
