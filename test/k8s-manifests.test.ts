// deploy/k8s/ cannot be applied here (no cluster), so each manifest is checked against the
// Kubernetes schemas (test/helpers/k8s-manifests.ts), against the other manifests (selectors, names,
// ports), and against the server itself: its port, the routes its probes ask, the environment names
// it reads, a drain that fits the grace period, the image's user, and the metrics autoscaling needs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { ConfigError, loadConfig } from '../server/config.js';
import { serverEnvNames } from './helpers/server-env.js';
import { K8S_DIR, REPO, loadManifests, parseFile, validateManifest, yamlFiles, type Manifest, type Obj } from './helpers/k8s-manifests.js';

const read = (file: string) => readFileSync(path.join(REPO, file), 'utf8');
const MANIFESTS = loadManifests();
const DEFAULTS = loadConfig([], {});
const ROUTES = [...read('server/http/routes.ts').matchAll(/app\.get\('([^']+)'/g)].map((m) => m[1]);
const ENV_NAMES = serverEnvNames();

function one<T>(kind: string, name?: string): T & Manifest {
  const found = MANIFESTS.filter((m) => m.kind === kind && (name === undefined || m.name === name));
  assert.equal(found.length, 1, `one ${kind}${name ? ` ${name}` : ''} in deploy/k8s`);
  return { ...found[0], ...(found[0].doc as T) };
}

const server = one<IDeployment>('Deployment', 'realtime-diffusion');
const pod = server.spec!.template.spec!;
const container = pod.containers.find((c) => c.name === 'server')!;
const env = new Map((container.env ?? []).map((e) => [e.name, e]));
const literal = (name: string) => env.get(name)?.value;

/** ENV of Dockerfile.gpu's runtime stage: what the container starts with before the pod's env. */
function imageEnv(): Record<string, string> {
  const runtime = read('Dockerfile.gpu').split(/^FROM /m).pop()!;
  const vars: Record<string, string> = {};
  for (const line of runtime.match(/^ENV .+$/gm) ?? []) for (const m of line.matchAll(/(\w+)=(\S+)/g)) vars[m[1]] = m[2];
  return vars;
}

/** The environment the server process gets: the image's, then the pod's, secrets filled in. */
function processEnv(secrets: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = imageEnv();
  for (const e of container.env ?? []) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef && secrets[e.valueFrom.secretKeyRef.key] !== undefined) out[e.name] = secrets[e.valueFrom.secretKeyRef.key];
  }
  return out;
}

/** Seconds a preStop hook holds the pod before SIGTERM: `sleep N` by exec, or the sleep action. */
function preStopSeconds(): number {
  const hook = container.lifecycle?.preStop;
  if (hook?.sleep) return hook.sleep.seconds;
  const command = hook?.exec?.command ?? [];
  assert.deepEqual(command.slice(0, 1), ['sleep'], `preStop ${JSON.stringify(command)}`);
  return Number(command[1]);
}

function nginxDirective(name: string): string | undefined {
  return read('deploy/nginx/nginx.conf').replace(/#.*$/gm, '').match(new RegExp(`^\\s*${name} ([^;]+);`, 'm'))?.[1];
}

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

test('every document under deploy/k8s is of a known kind and valid against its schema, with no field Kubernetes lacks', () => {
  assert.ok(MANIFESTS.length >= 8, `${MANIFESTS.length} documents`);
  for (const m of MANIFESTS) validateManifest(m);
  const names = MANIFESTS.map((m) => `${m.kind}/${m.name}`);
  assert.equal(new Set(names).size, names.length, `no two objects of a kind share a name: ${names.join(', ')}`);
});

test('kustomization.yaml lists every manifest and only files that exist; examples stay out and are named in it', () => {
  const [kustomization] = parseFile('kustomization.yaml');
  assert.equal(kustomization.kind, 'Kustomization');
  const resources = kustomization.resources as string[];
  for (const file of resources) assert.ok(existsSync(path.join(K8S_DIR, file)), `resources: ${file} is missing`);
  const text = readFileSync(path.join(K8S_DIR, 'kustomization.yaml'), 'utf8');
  for (const file of yamlFiles().filter((f) => f !== 'kustomization.yaml')) {
    if (file.endsWith('.example.yaml')) {
      assert.ok(!resources.includes(file), `${file} is an example, not a resource`);
      assert.ok(text.includes(file), `${file} is documented in kustomization.yaml`);
    } else {
      assert.ok(resources.includes(file), `${file} is not listed in kustomization.yaml`);
    }
  }
  // Labels added to selectors would change the Deployment's immutable selector on the next apply.
  assert.equal(kustomization.commonLabels, undefined, 'commonLabels rewrites selectors');
  for (const entry of (kustomization.labels ?? []) as Obj[]) assert.equal(entry.includeSelectors, false);
});

test('the objects agree: selectors pick the pods, and every name and port referred to exists', () => {
  const podLabels = server.spec!.template.metadata?.labels;
  assert.ok(selects(server.spec!.selector.matchLabels, podLabels), 'the Deployment selects its own pods');
  const service = one<IService>('Service', 'realtime-diffusion');
  assert.ok(selects(service.spec!.selector, podLabels), 'the Service selects the server pods');
  const pdb = one<IPodDisruptionBudget>('PodDisruptionBudget');
  assert.ok(selects(pdb.spec!.selector?.matchLabels, podLabels), 'the PDB covers the server pods');
  assert.equal(pdb.spec!.maxUnavailable, 1);
  const affinity = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0];
  assert.equal(affinity?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
  assert.ok(selects(affinity?.podAffinityTerm.labelSelector?.matchLabels, podLabels), 'anti-affinity spreads these pods');

  const containerPorts = new Map((container.ports ?? []).map((p) => [p.name, p.containerPort]));
  for (const port of service.spec!.ports ?? []) assert.ok(containerPorts.has(String(port.targetPort)), `Service targetPort ${port.targetPort}`);
  const ingress = one<IIngress>('Ingress');
  const backends = (ingress.spec!.rules ?? []).flatMap((r) => r.http?.paths ?? []).map((p) => p.backend.service!);
  assert.ok(backends.length > 0);
  for (const b of backends) {
    assert.equal(b.name, service.name, 'the Ingress sends to the Service');
    assert.ok((service.spec!.ports ?? []).some((p) => p.name === b.port?.name || p.port === b.port?.number), `Ingress port ${JSON.stringify(b.port)}`);
  }
  const hpa = one<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
  assert.deepEqual(hpa.spec!.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: server.name });
  assert.ok((hpa.spec!.minReplicas ?? 1) >= 2 && (hpa.spec!.minReplicas ?? 1) <= server.spec!.replicas!, 'never below two pods');

  const claims = (pod.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []));
  for (const claim of claims) one<IPersistentVolumeClaim>('PersistentVolumeClaim', claim);
  const [secret] = parseFile('secret.example.yaml') as unknown as ISecret[];
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (!ref) continue;
    assert.equal(ref.name, secret.metadata?.name, `${e.name} comes from the documented Secret`);
    assert.ok(ref.key in (secret.stringData ?? {}), `${e.name}: key ${ref.key} is in secret.example.yaml`);
  }
});

test('the server container agrees with the server: port, probe routes, env names, a configuration it accepts', () => {
  const http = (container.ports ?? []).find((p) => p.name === 'http');
  assert.equal(http?.containerPort, DEFAULTS.port, 'the server listens on its default port');
  assert.equal(literal('PORT'), String(http?.containerPort));
  assert.equal(literal('HOST'), '0.0.0.0', 'reachable from other pods');
  const probes = { startupProbe: container.startupProbe, livenessProbe: container.livenessProbe, readinessProbe: container.readinessProbe };
  for (const [name, probe] of Object.entries(probes)) {
    const get = probe?.httpGet;
    assert.ok(get, `${name} asks over HTTP`);
    assert.ok(get.port === 'http' || get.port === http?.containerPort, `${name} port ${get.port}`);
    assert.ok(ROUTES.includes(get.path ?? ''), `${name} path ${get.path} (server routes: ${ROUTES.join(', ')})`);
  }
  assert.equal(probes.readinessProbe?.httpGet?.path, '/readyz', 'readiness: loaded, warmed up and not draining');
  // /readyz is 503 through a drain and inference restarts: as liveness it would kill a pod that is
  // finishing its sessions.
  assert.equal(probes.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(probes.startupProbe?.httpGet?.path, '/healthz');

  for (const name of env.keys()) assert.ok(ENV_NAMES.has(name), `env ${name}: the server never reads it`);
  const secrets = { API_KEYS: 'k'.repeat(32), TOKEN_SECRET: 's'.repeat(64) };
  const config = loadConfig([], processEnv(secrets));
  assert.equal(config.port, http?.containerPort);
  assert.equal(config.device, 'cuda');
  assert.equal(config.modelDir, literal('MODEL'));
  assert.equal(config.security.tokenSecret, secrets.TOKEN_SECRET, 'TOKEN_SECRET reaches the server');
  // Keys and token secret come from the Secret, never from a literal in the manifest.
  for (const name of ['API_KEYS', 'TOKEN_SECRET']) assert.equal(env.get(name)?.valueFrom?.secretKeyRef?.name, 'realtime-diffusion', name);
  assert.equal(env.get('TOKEN_SECRET')?.valueFrom?.secretKeyRef?.optional, undefined, 'without it each pod picks its own');
  assert.throws(() => loadConfig([], processEnv({})), ConfigError, 'no keys: the server refuses to serve 0.0.0.0');
  const [example] = parseFile('secret.example.yaml') as unknown as ISecret[];
  assert.throws(() => loadConfig([], processEnv(example.stringData ?? {})), ConfigError, 'the example Secret unchanged must not start a server');
});

test('a drain fits: preStop, then SIGTERM and DRAIN_TIMEOUT, inside terminationGracePeriodSeconds', () => {
  const drain = Number(literal('DRAIN_TIMEOUT') ?? DEFAULTS.drainTimeoutMs / 1000);
  const config = loadConfig([], processEnv({ API_KEYS: 'k'.repeat(32) }));
  assert.equal(config.drainTimeoutMs, drain * 1000, 'DRAIN_TIMEOUT is within the range the server accepts');
  assert.ok(drain < 30, `DRAIN_TIMEOUT ${drain} s: below Kubernetes' default 30 s grace, should the grace period be dropped`);
  const preStop = preStopSeconds();
  assert.ok(preStop >= 1 && preStop <= 15, `preStop sleep ${preStop} s`);
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  assert.ok(grace > preStop + drain, `grace ${grace} s > preStop ${preStop} s + drain ${drain} s`);
  // The image must have the command the hook runs: nvidia/cuda's Ubuntu base has coreutils.
  if (container.lifecycle?.preStop?.exec) assert.match(read('Dockerfile.gpu'), /^ARG CUDA_IMAGE=nvidia\/cuda:[^\s]*-ubuntu/m);
});

test('the pod runs as the image\'s user with a read-only root, one GPU, the model read-only and writable data and /tmp', () => {
  const uid = Number(read('Dockerfile.gpu').match(/useradd [^\n]*--uid (\d+)/)?.[1]);
  assert.equal(pod.securityContext?.runAsUser, uid, 'the uid of Dockerfile.gpu\'s user app');
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  const sc = container.securityContext;
  assert.equal(sc?.allowPrivilegeEscalation, false);
  assert.deepEqual(sc?.capabilities?.drop, ['ALL']);
  assert.equal(sc?.readOnlyRootFilesystem, true);
  const mounts = new Map((container.volumeMounts ?? []).map((m) => [m.mountPath, m]));
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  // The server writes only to DATA_DIR (fal's store) and the temp dir; both must be writable.
  for (const dir of [literal('DATA_DIR'), '/tmp']) {
    const mount = mounts.get(dir ?? '');
    assert.ok(mount && !mount.readOnly, `${dir} is a writable mount`);
    assert.ok(volumes.has(mount.name));
  }
  const model = mounts.get(literal('MODEL') ?? '');
  assert.equal(model?.readOnly, true, 'the model folder is mounted read-only');
  assert.ok(volumes.get(model!.name)?.persistentVolumeClaim, 'from the models claim');
  assert.equal(String(container.resources?.limits?.['nvidia.com/gpu']), '1', 'one GPU per pod');
  assert.equal(container.image, 'realtime-diffusion:gpu');
  assert.match(read('Dockerfile.gpu'), /docker build -f Dockerfile\.gpu -t realtime-diffusion:gpu \./, 'the tag Dockerfile.gpu says to build');
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.enableServiceLinks, false, 'no injected *_PORT variables in a server configured by env');
});

test('the Ingress does what deploy/nginx/nginx.conf does, and outlasts the server\'s own timeouts', () => {
  const ingress = one<IIngress>('Ingress');
  const a = ingress.metadata?.annotations ?? {};
  const key = (name: string) => a[`nginx.ingress.kubernetes.io/${name}`];
  assert.equal(ingress.spec!.ingressClassName, 'nginx');
  for (const name of ['read', 'send']) {
    const seconds = Number(key(`proxy-${name}-timeout`));
    assert.equal(`${seconds}s`, nginxDirective(`proxy_${name}_timeout`));
    assert.ok(seconds > DEFAULTS.limits.idleTimeoutSeconds && seconds > DEFAULTS.limits.sessionIdleSeconds, `proxy-${name}-timeout ${seconds}`);
  }
  assert.equal(`${key('proxy-connect-timeout')}s`, nginxDirective('proxy_connect_timeout'));
  assert.equal(key('proxy-body-size'), nginxDirective('client_max_body_size'), 'the same body limit (checked end to end in nginx-deploy.e2e)');
  assert.equal(key('proxy-buffering'), 'off');
  assert.equal(nginxDirective('proxy_buffering'), 'off');
  assert.equal(key('proxy-next-upstream'), nginxDirective('proxy_next_upstream'));
  assert.match(key('proxy-next-upstream') ?? '', /\bhttp_503\b/, 'a refused upgrade goes to another pod');
  assert.equal(key('proxy-next-upstream-tries'), nginxDirective('proxy_next_upstream_tries'));
  assert.equal(`${key('proxy-next-upstream-timeout')}s`, nginxDirective('proxy_next_upstream_timeout'));
  // Sessions must be free to land on any pod and to reconnect to another when theirs drains.
  assert.equal(key('upstream-hash-by'), undefined);
  assert.equal(key('affinity'), undefined);
  assert.equal(key('load-balance'), 'round_robin', 'ewma ranks pods by how long finished sessions lasted');
});

test('autoscaling scales on metrics the server exports, from pods Prometheus can scrape', () => {
  const exported = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/metrics\.ts$/.test(entry.name)) for (const m of readFileSync(full, 'utf8').matchAll(/name: '([a-z][a-z0-9_]*)'/g)) exported.add(m[1]);
    }
  };
  walk(path.join(REPO, 'server'));
  assert.ok(exported.has('realtime_sessions'), 'the metric scan found the server\'s gauges');
  const hpa = one<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
  for (const metric of hpa.spec!.metrics ?? []) {
    assert.equal(metric.type, 'Pods');
    assert.ok(exported.has(metric.pods!.metric.name), `HPA metric ${metric.pods!.metric.name}`);
    assert.equal(metric.pods!.target.type, 'AverageValue');
    assert.ok(Number(metric.pods!.target.averageValue) < DEFAULTS.maxSessions, 'scale out before pods refuse sessions');
  }
  assert.ok((hpa.spec!.behavior?.scaleDown?.stabilizationWindowSeconds ?? 300) >= 300, 'each scale-down moves a pod\'s sessions: not on a blip');
  const keda = parseFile('keda-scaledobject.example.yaml')[0];
  const triggers = ((keda.spec as Obj).triggers as { metadata: { query: string } }[]).map((t) => t.metadata.query);
  for (const query of triggers) {
    const names = [...query.matchAll(/\b([a-z][a-z0-9_]*)\{/g)].map((m) => m[1]);
    assert.ok(names.length > 0 && names.every((n) => exported.has(n)), `KEDA query ${query}`);
  }
  assert.equal(((keda.spec as Obj).scaleTargetRef as Obj).name, server.name);
  const annotations = server.spec!.template.metadata?.annotations ?? {};
  assert.equal(annotations['prometheus.io/port'], String(DEFAULTS.port));
  assert.ok(ROUTES.includes(annotations['prometheus.io/path']), 'prometheus.io/path is a server route');
});

test('QUEUE points at the Redis Service, whose pods keep jobs (noeviction) and admit only the server', () => {
  const queue = new URL(literal('QUEUE') ?? '');
  assert.equal(queue.protocol, 'redis:');
  const service = one<IService>('Service', queue.hostname);
  assert.ok((service.spec!.ports ?? []).some((p) => p.port === Number(queue.port)), `Service ${queue.hostname} port ${queue.port}`);
  const redis = one<IDeployment>('Deployment', queue.hostname);
  const spec = redis.spec!.template.spec!;
  assert.ok(selects(service.spec!.selector, redis.spec!.template.metadata?.labels), 'the redis Service selects the Redis pod');
  const args = spec.containers[0].args ?? [];
  assert.equal(args[args.indexOf('--maxmemory-policy') + 1], 'noeviction', 'a full queue refuses jobs instead of dropping them');
  const policy = one<INetworkPolicy>('NetworkPolicy');
  assert.ok(selects(policy.spec!.podSelector?.matchLabels, redis.spec!.template.metadata?.labels));
  const from = policy.spec!.ingress?.[0]?.from?.[0]?.podSelector?.matchLabels;
  assert.ok(selects(from, server.spec!.template.metadata?.labels), 'the server pods may reach Redis');
});

// kubectl is not a dependency of the project: where it is installed, its built-in kustomize must
// render the base; elsewhere this says so and skips.
const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const noKubectl = kubectl.status === 0 ? false : 'kubectl is not installed';
test('kubectl kustomize renders the base into the listed objects, each labelled part-of', { skip: noKubectl }, () => {
  const out = spawnSync('kubectl', ['kustomize', K8S_DIR], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const kinds = [...out.stdout.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]).sort();
  const listed = MANIFESTS.filter((m) => !m.file.endsWith('.example.yaml')).map((m) => m.kind).sort();
  assert.deepEqual(kinds, listed);
  assert.equal([...out.stdout.matchAll(/app\.kubernetes\.io\/part-of: realtime-diffusion/g)].length, listed.length);
});
