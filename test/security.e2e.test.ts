// Keys, browser tokens, origins, per-key limits, safe defaults and TLS, against the real server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { CloseCode, ErrorCode, type ServerMessage } from '../shared/protocol.js';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const KEY = 'test-key-0123456789abcdef';
const OTHER_KEY = 'other-key-0123456789abcdef';
const SECRET = 'a shared token secret for these tests';
const GOOD_ORIGIN = 'http://good.example';

/** Opens a socket; resolves with the HTTP status of a refused upgrade, or the open socket. */
function tryConnect(url: string, headers: Record<string, string> = {}, options: WebSocket.ClientOptions = {}) {
  return new Promise<{ status: number; ws?: WebSocket; messages: ServerMessage[] }>((resolve, reject) => {
    const ws = new WebSocket(url, { headers, ...options });
    const messages: ServerMessage[] = [];
    ws.on('message', (data: Buffer) => {
      messages.push(decodeMessage(data) as ServerMessage);
      if (messages.length === 1) resolve({ status: 101, ws, messages });
    });
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode!, messages }));
    ws.on('error', reject);
  });
}

const until = (ws: WebSocket, messages: ServerMessage[], match: (m: ServerMessage) => boolean, ms = 10_000) =>
  new Promise<ServerMessage>((resolve, reject) => {
    const found = messages.find(match);
    if (found) return resolve(found);
    const timer = setTimeout(() => reject(new Error('timed out')), ms);
    ws.on('message', () => {
      const hit = messages.find(match);
      if (hit) {
        clearTimeout(timer);
        resolve(hit);
      }
    });
  });

async function mintToken(server: ServerProcess, key: string, origin?: string) {
  const res = await fetch(`${server.httpUrl}/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Key ${key}`, ...(origin ? { origin } : {}) },
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { token: string; expires_at: number } };
}

describe('authentication', () => {
  const TOKEN_TTL_S = 4;
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--token-ttl', String(TOKEN_TTL_S), '--allowed-origins', GOOD_ORIGIN, '--max-sessions-per-key', '3'], {
      env: { API_KEYS: `${KEY},${OTHER_KEY}`, TOKEN_SECRET: SECRET },
    });
  });
  after(() => server.stop());

  test('refused upgrades: no credentials, wrong key, expired token, foreign token, disallowed origin', async () => {
    const expired = await new SignJWT({ scope: 'realtime' })
      .setProtectedHeader({ alg: 'HS256' }).setIssuer('realtime-diffusion-server').setAudience('realtime:/v1/realtime')
      .setSubject('whoever').setExpirationTime(Math.floor(Date.now() / 1000) - 10)
      .sign(new TextEncoder().encode(SECRET));
    const { body } = await mintToken(server, KEY);
    const foreign = await new SignJWT({ scope: 'realtime' })
      .setProtectedHeader({ alg: 'HS256' }).setIssuer('realtime-diffusion-server').setAudience('realtime:/v1/realtime')
      .setSubject('whoever').setExpirationTime('1h')
      .sign(new TextEncoder().encode('some other secret'));
    const cases: [string, string, Record<string, string>, number][] = [
      ['no credentials', server.wsUrl, {}, 401],
      ['wrong key', server.wsUrl, { authorization: 'Key not-a-key-but-long-enough' }, 401],
      ['expired token', `${server.wsUrl}?token=${expired}`, {}, 401],
      ['token signed with another secret', `${server.wsUrl}?token=${foreign}`, {}, 401],
      ['disallowed origin, valid token', `${server.wsUrl}?token=${body.token}`, { origin: 'http://evil.example' }, 403],
      ['disallowed origin, valid key', server.wsUrl, { authorization: `Key ${KEY}`, origin: 'http://evil.example' }, 403],
    ];
    for (const [name, url, headers, status] of cases) {
      assert.equal((await tryConnect(url, headers)).status, status, name);
    }
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(metrics, /^realtime_frames_total 0$/m, 'no inference ran');
    assert.match(metrics, /^realtime_sessions 0$/m);
    assert.match(metrics, /^realtime_refused_connections_total\{reason="unauthorized"\} 4$/m);
    assert.match(metrics, /^realtime_refused_connections_total\{reason="origin"\} 2$/m);
  });

  test('API keys (Key and Bearer) and browser tokens from POST /v1/tokens open sessions', async () => {
    for (const headers of [{ authorization: `Key ${KEY}` }, { authorization: `Bearer ${OTHER_KEY}` }]) {
      const { status, ws } = await tryConnect(server.wsUrl, headers);
      assert.equal(status, 101);
      ws!.close();
    }
    const minted = await mintToken(server, KEY, GOOD_ORIGIN);
    assert.equal(minted.status, 200);
    assert.equal(minted.headers.get('access-control-allow-origin'), GOOD_ORIGIN);
    assert.ok(minted.body.expires_at > Date.now() / 1000 && minted.body.expires_at <= Date.now() / 1000 + TOKEN_TTL_S);
    const { status, ws, messages } = await tryConnect(`${server.wsUrl}?token=${minted.body.token}`, { origin: GOOD_ORIGIN });
    assert.equal(status, 101);
    ws!.send(encodeMessage({ type: 'generate', id: 1, prompt: 'x', steps: 1, width: 64, height: 64 }));
    assert.equal((await until(ws!, messages, (m) => m.type === 'frame')).type, 'frame');
    ws!.close();
    assert.equal((await mintToken(server, 'wrong-key-but-long-enough')).status, 401);
    assert.equal((await mintToken(server, KEY, 'http://evil.example')).status, 403);
  });

  test('CORS preflight for /v1/tokens answers allowed origins only', async () => {
    const ok = await fetch(`${server.httpUrl}/v1/tokens`, { method: 'OPTIONS', headers: { origin: GOOD_ORIGIN } });
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('access-control-allow-origin'), GOOD_ORIGIN);
    assert.match(ok.headers.get('access-control-allow-headers') ?? '', /authorization/);
    const bad = await fetch(`${server.httpUrl}/v1/tokens`, { method: 'OPTIONS', headers: { origin: 'http://evil.example' } });
    assert.equal(bad.status, 403);
  });

  test('an in-band token refresh keeps a connection past the first token; without one it closes with 4003', async () => {
    const first = (await mintToken(server, KEY)).body;
    const { ws, messages } = await tryConnect(`${server.wsUrl}?token=${first.token}`);
    const closed = new Promise<number>((resolve) => ws!.on('close', (code) => resolve(code)));
    // `exp` is in whole seconds, so a token lives between TTL-1 and TTL seconds. Refresh just after the next
    // second begins: the second token then outlives the first, and the first still has over TTL-2 seconds left.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    const second = (await mintToken(server, KEY)).body;
    ws!.send(encodeMessage({ type: 'auth', token: second.token }));
    const authenticated = await until(ws!, messages, (m) => m.type === 'authenticated');
    assert.equal(authenticated.type === 'authenticated' && authenticated.expiresAt, second.expires_at * 1000);
    // Past the first token's expiry: still open and serving.
    await new Promise((r) => setTimeout(r, Math.max(0, first.expires_at * 1000 - Date.now()) + 300));
    ws!.send(encodeMessage({ type: 'generate', id: 'late', prompt: 'x', steps: 1, width: 64, height: 64 }));
    await until(ws!, messages, (m) => m.type === 'frame' && m.id === 'late');
    // A token of another key is refused in-band and changes nothing.
    ws!.send(encodeMessage({ type: 'auth', token: (await mintToken(server, OTHER_KEY)).body.token }));
    const refused = await until(ws!, messages, (m) => m.type === 'error');
    assert.equal(refused.type === 'error' && refused.code, ErrorCode.InvalidToken);
    assert.equal(await closed, CloseCode.TokenExpired);
  });

  test('per-key concurrent sessions are limited with 429', async () => {
    const open = await Promise.all([1, 2, 3].map(() => tryConnect(server.wsUrl, { authorization: `Key ${OTHER_KEY}` })));
    assert.ok(open.every((o) => o.status === 101));
    assert.equal((await tryConnect(server.wsUrl, { authorization: `Key ${OTHER_KEY}` })).status, 429);
    assert.equal((await tryConnect(server.wsUrl, { authorization: `Key ${KEY}` })).status, 101, 'other keys are unaffected');
    for (const o of open) o.ws!.close();
  });
});

describe('safe defaults and TLS', () => {
  const main = fileURLToPath(new URL('../server/main.js', import.meta.url));

  test('without keys, a non-loopback bind is refused unless --insecure', async () => {
    const refused = spawnSync(process.execPath, [main, '--host', '0.0.0.0', '--port', '0'], { encoding: 'utf8', env: { ...process.env, API_KEYS: '' } });
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /without API keys/);
    const insecure = await startServerProcess(['--host', '0.0.0.0', '--insecure'], { env: { API_KEYS: '' } });
    assert.ok(insecure.logs.some((l) => l.level === 40 && /--insecure/.test(String(l.msg))), 'warns loudly');
    await insecure.stop();
  });

  test('--tls-cert/--tls-key serve https and wss', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tls-'));
    try {
      const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
      const server = await startServerProcess(['--tls-cert', cert, '--tls-key', key]);
      try {
        const status = await new Promise<number>((resolve, reject) => {
          request(`https://127.0.0.1:${server.port}/healthz`, { rejectUnauthorized: false }, (res) => resolve(res.statusCode!)).on('error', reject).end();
        });
        assert.equal(status, 200);
        const { status: upgrade, ws } = await tryConnect(`wss://127.0.0.1:${server.port}/v1/realtime`, {}, { rejectUnauthorized: false });
        assert.equal(upgrade, 101);
        ws!.close();
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
