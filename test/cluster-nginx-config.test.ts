// The repository's nginx config rendered for a local cluster (bench/cluster/nginx-config.ts): one
// loopback upstream per node with the deployment's own parameters, and everything else (balancing,
// retries, timeouts) left as the deployment has it. With nginx installed, nginx itself checks the
// result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { failTimeoutMs, nginxConfigPath, renderNginxConfig } from '../bench/cluster/nginx-config.js';
import { NGINX } from '../bench/cluster/launcher.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

const SOURCE = `# a deployment's config
user www-data;
worker_processes auto;
pid /run/nginx.pid;
events { worker_connections 1024; }
http {
  access_log /var/log/nginx/access.log;
  upstream realtime {
    least_conn;
    server node1:8080 max_fails=2 fail_timeout=3s;
    server node2:8080 max_fails=2 fail_timeout=3s;
  }
  server {
    listen 8080;
    listen [::]:8080;
    location / {
      proxy_pass http://realtime;
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries 3;
    }
  }
}
`;

test('one loopback upstream per node, each with the deployment parameters; the rest unchanged', () => {
  const conf = renderNginxConfig(SOURCE, { dir: '/tmp/x', listenPort: 9000, upstreamPorts: [7001, 7002, 7003], sourceDir: '/nowhere' });
  assert.deepEqual([...conf.matchAll(/server 127\.0\.0\.1:(\d+) max_fails=2 fail_timeout=3s;/g)].map((m) => m[1]), ['7001', '7002', '7003']);
  assert.doesNotMatch(conf, /node\d:/);
  assert.deepEqual([...conf.matchAll(/listen [^;]+;/g)].map((m) => m[0]), ['listen 127.0.0.1:9000;']);
  for (const kept of ['least_conn;', 'proxy_next_upstream error timeout http_503;', 'proxy_next_upstream_tries 3;', 'proxy_pass http://realtime;']) {
    assert.ok(conf.includes(kept), kept);
  }
  // Paths a container's nginx owns are the local run's.
  assert.doesNotMatch(conf, /\/run\/nginx\.pid|\/var\/log|user www-data/);
  assert.match(conf, /^pid \/tmp\/x\/nginx\.pid;/m);
  assert.match(conf, /worker_processes 1;/);
  assert.match(conf, /access_log off;/);
  assert.equal(failTimeoutMs(SOURCE), 3000);
  assert.equal(failTimeoutMs('server a:1;'), 10_000, "nginx's default");
});

test('the config file: deploy/nginx/nginx.conf where it has moved, else deploy/nginx.conf', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'nginx-path-'));
  try {
    assert.equal(nginxConfigPath(root), path.join(root, 'deploy', 'nginx.conf'));
    mkdirSync(path.join(root, 'deploy', 'nginx'), { recursive: true });
    writeFileSync(path.join(root, 'deploy', 'nginx', 'nginx.conf'), SOURCE);
    assert.equal(nginxConfigPath(root), path.join(root, 'deploy', 'nginx', 'nginx.conf'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the repository's config, rendered for three nodes, passes nginx -t", { skip: existsSync(NGINX) ? false : `no nginx at ${NGINX}` }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nginx-render-'));
  try {
    chmodSync(dir, 0o755);
    const source = nginxConfigPath(REPO);
    const conf = renderNginxConfig(readFileSync(source, 'utf8'), { dir, listenPort: 9000, upstreamPorts: [7001, 7002, 7003], sourceDir: path.dirname(source) });
    assert.equal([...conf.matchAll(/server 127\.0\.0\.1:700\d/g)].length, 3);
    writeFileSync(path.join(dir, 'nginx.conf'), conf);
    execFileSync(NGINX, ['-t', '-q', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'pipe' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
