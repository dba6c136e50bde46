#!/usr/bin/env node
// skiff devstack: a token-validating gRPC proxy in front of the Zeebe gateway (a stand-in for
// the gateway's own OIDC validation, which the devstack broker 8.5 does not have; see
// docs/adr/0007-token-validating-gateway-proxy.md).
//
// Every gRPC call (unary and streaming, HTTP/2 cleartext) must carry `authorization: Bearer
// <JWT>`; the JWT is verified with the `jose` library against the authorization server's JWKS:
// signature (RS256/PS256/ES256, key chosen by `kid`), expiry (`exp`, `nbf`, no leeway), issuer
// and audience. A call that passes is forwarded unchanged to the gateway; any other call is
// answered UNAUTHENTICATED (trailers-only, as a gRPC server answers) with the reason.
//
//   node token-proxy.mjs --target 127.0.0.1:26500 --jwks URL --issuer URL --audience AUD
//                        [--listen 127.0.0.1:0] [--control 127.0.0.1:0]
//                        [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--target-ca PEM]
//   (env: SKIFF_TOKEN_PROXY_LISTEN, _CONTROL, _TARGET, _JWKS, _ISSUER, _AUDIENCE)
//
// With --tls-cert/--tls-key it listens over TLS (1.2+, ALPN h2), requiring a client
// certificate signed by --tls-client-ca when given; with --target-ca it reaches the gateway
// over TLS, trusting that CA (host name checked). /seen then also names each call's TLS version
// and client certificate subject (tls, client_cert).
//
// Prints one JSON line on stdout when listening: {"listen":PORT,"control":PORT}.
// Control API (HTTP/1.1, GET): /seen?from=N  what it saw from call N on: path, verdict, reason,
// client (azp), jti, iat, exp (never the token); /status  counters; /quit.
import http from 'node:http';
import fs from 'node:fs';
import http2 from 'node:http2';
import process from 'node:process';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_PATH, NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } =
  http2.constants;
const UNAUTHENTICATED = 16;
const UNAVAILABLE = 14;
const MAX_SEEN = 100000;

function arg(name, envName, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[envName] || dflt;
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i) || '127.0.0.1', port: Number(s.slice(i + 1)) };
}

const listenAddr = hostPort(arg('listen', 'SKIFF_TOKEN_PROXY_LISTEN', '127.0.0.1:0'));
const controlAddr = hostPort(arg('control', 'SKIFF_TOKEN_PROXY_CONTROL', '127.0.0.1:0'));
const target = hostPort(arg('target', 'SKIFF_TOKEN_PROXY_TARGET', '127.0.0.1:26500'));
const jwksUrl = arg('jwks', 'SKIFF_TOKEN_PROXY_JWKS', '');
const issuer = arg('issuer', 'SKIFF_TOKEN_PROXY_ISSUER', '');
const audience = arg('audience', 'SKIFF_TOKEN_PROXY_AUDIENCE', '');
if (!jwksUrl || !issuer || !audience) {
  console.error('token-proxy: --jwks, --issuer and --audience are required');
  process.exit(2);
}
const tlsCert = arg('tls-cert', 'SKIFF_TOKEN_PROXY_TLS_CERT', '');
const tlsKey = arg('tls-key', 'SKIFF_TOKEN_PROXY_TLS_KEY', '');
const tlsClientCa = arg('tls-client-ca', 'SKIFF_TOKEN_PROXY_TLS_CLIENT_CA', '');
const targetCa = arg('target-ca', 'SKIFF_TOKEN_PROXY_TARGET_CA', '');
const jwks = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 1000 });
const verifyOptions = { issuer, audience, algorithms: ['RS256', 'PS256', 'ES256'], clockTolerance: 0 };

const seen = [];
const counters = { calls: 0, accepted: 0, rejected: 0, upstreamErrors: 0 };

function record(entry) {
  if (seen.length < MAX_SEEN) seen.push({ at: Date.now(), ...entry });
}

function trailersOnly(stream, code, message) {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({
    [HTTP2_HEADER_STATUS]: 200,
    'content-type': 'application/grpc',
    'grpc-status': String(code),
    'grpc-message': encodeURIComponent(message),
  }, { endStream: true });
}

// The verdict on a call's authorization header: the token's claims, or why it is refused.
async function check(header) {
  const m = /^Bearer ([^\s]+)$/i.exec(header || '');
  if (!m) return { ok: false, reason: header ? 'not a Bearer authorization' : 'no bearer token' };
  try {
    const { payload } = await jwtVerify(m[1], jwks, verifyOptions);
    return { ok: true, payload };
  } catch (e) {
    return { ok: false, reason: `${e.code || 'ERR'}: ${e.message}` };
  }
}

// ---- forwarding ------------------------------------------------------------------------------
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding',
  'upgrade', 'host', 'http2-settings']);

function copyHeaders(h, skipPseudo) {
  const out = {};
  for (const [k, v] of Object.entries(h)) {
    if (HOP.has(k) || (skipPseudo && k.startsWith(':'))) continue;
    out[k] = v;
  }
  return out;
}

function upstreamFor(session) {
  let up = session.skiffUpstream;
  if (up && !up.closed && !up.destroyed) return up;
  up = targetCa
    ? http2.connect(`https://${target.host}:${target.port}`, { ca: fs.readFileSync(targetCa) })
    : http2.connect(`http://${target.host}:${target.port}`);
  up.on('error', () => { counters.upstreamErrors += 1; });
  up.on('close', () => { if (session.skiffUpstream === up && !session.destroyed) session.destroy(); });
  session.skiffUpstream = up;
  return up;
}

function pipeWithBackpressure(src, dst) {
  src.on('data', (chunk) => {
    if (dst.destroyed || dst.closed) return;
    if (!dst.write(chunk)) {
      src.pause();
      dst.once('drain', () => src.resume());
    }
  });
}

function forward(stream, headers) {
  const reqHeaders = copyHeaders(headers, false);
  reqHeaders[':authority'] = `${target.host}:${target.port}`;
  let up;
  try {
    up = upstreamFor(stream.session).request(reqHeaders, { endStream: false });
  } catch (e) {
    trailersOnly(stream, UNAVAILABLE, `token proxy: upstream: ${e.message}`);
    return;
  }
  let trailers = null;
  let responded = false;
  let endedWithHeaders = false;
  pipeWithBackpressure(stream, up);
  stream.on('end', () => { if (!up.destroyed && !up.closed) up.end(); });
  stream.on('close', () => { if (!up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL); });
  stream.resume();
  up.on('response', (h, flags) => {
    if (stream.destroyed || stream.closed) return;
    responded = true;
    endedWithHeaders = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    stream.respond(copyHeaders(h, false),
      endedWithHeaders ? { endStream: true } : { waitForTrailers: true });
  });
  up.on('trailers', (t) => { trailers = copyHeaders(t, true); });
  pipeWithBackpressure(up, stream);
  stream.on('wantTrailers', () => {
    stream.sendTrailers(trailers || { 'grpc-status': '13', 'grpc-message': 'no trailers' });
  });
  up.on('end', () => {
    if (!stream.destroyed && !stream.closed && responded && !endedWithHeaders &&
      !stream.writableEnded) stream.end();
  });
  up.on('error', () => { counters.upstreamErrors += 1; });
  up.on('close', () => {
    if (stream.destroyed || stream.closed) return;
    if (!responded) trailersOnly(stream, UNAVAILABLE, 'token proxy: upstream unavailable');
    else if (up.rstCode && !stream.writableEnded) stream.close(up.rstCode);
  });
}

// The TLS version and client certificate subject of a session ('' when plaintext or none).
function tlsFacts(session) {
  const sock = session && session.socket;
  if (!sock || typeof sock.getProtocol !== 'function') return { tls: '', client_cert: '' };
  const peer = sock.getPeerCertificate();
  const cn = peer && peer.subject ? `CN=${peer.subject.CN}` : '';
  return { tls: sock.getProtocol() || '', client_cert: cn };
}

function onStream(stream, headers) {
  const path = headers[HTTP2_HEADER_PATH] || '';
  const n = counters.calls++;
  stream.on('error', () => {});
  stream.pause(); // the request waits in HTTP/2 flow control while the token is checked
  check(headers.authorization).then((v) => {
    const claims = v.ok ? v.payload : {};
    record({ n, path, verdict: v.ok ? 'ok' : 'rejected', reason: v.ok ? '' : v.reason,
      client: claims.azp || claims.client_id || '', jti: claims.jti || '',
      iat: claims.iat || 0, exp: claims.exp || 0, ...tlsFacts(stream.session) });
    if (stream.destroyed || stream.closed) return;
    if (!v.ok) {
      counters.rejected += 1;
      stream.resume();
      trailersOnly(stream, UNAUTHENTICATED, `token proxy: ${v.reason}`);
      return;
    }
    counters.accepted += 1;
    forward(stream, headers);
  });
}

// ---- servers ---------------------------------------------------------------------------------
const server = tlsCert
  ? http2.createSecureServer({
    allowHTTP1: false, cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey),
    minVersion: 'TLSv1.2', ...(tlsClientCa
      ? { ca: fs.readFileSync(tlsClientCa), requestCert: true, rejectUnauthorized: true } : {}),
  })
  : http2.createServer({ allowHTTP1: false });
server.on('session', (s) => s.on('error', () => {}));
server.on('stream', onStream);

const control = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let body;
  if (url.pathname === '/seen') {
    const from = Number(url.searchParams.get('from') || 0);
    body = { seen: seen.filter((e) => e.n >= from), counters };
  } else if (url.pathname === '/status') {
    body = { counters };
  } else if (url.pathname === '/quit') {
    body = { quitting: true };
    setImmediate(() => process.exit(0));
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
});

server.listen(listenAddr.port, listenAddr.host, () => {
  control.listen(controlAddr.port, controlAddr.host, () => {
    console.log(JSON.stringify({ listen: server.address().port, control: control.address().port }));
  });
});
process.on('SIGTERM', () => process.exit(0));
