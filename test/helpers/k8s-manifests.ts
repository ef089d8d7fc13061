// Loads the Kubernetes manifests under deploy/k8s/ and checks each document against the schemas
// that kubernetes-models compiles from Kubernetes' OpenAPI (types, formats, required fields).
// Their validate() lets fields the schema does not have pass unnoticed, so a misspelt
// `readinesProbe` would be dropped by the API server without a word; unknownFields() catches those
// by watching which properties the schema's validator reads.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { HorizontalPodAutoscalerBehavior } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscalerBehavior';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const K8S_DIR = path.join(REPO, 'deploy', 'k8s');

export type Obj = Record<string, unknown>;

export interface Manifest {
  file: string;
  kind: string;
  apiVersion: string;
  name: string;
  doc: Obj;
}

interface Validating {
  prototype: { validate(): void };
}

/** Every kind the manifests may use, by apiVersion/kind; anything else fails the test. */
export const MODELS: Record<string, Validating> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/Secret': Secret,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
};

/** Kinds of custom resources kubernetes-models has no schema for, each with a hand-written check. */
export const CUSTOM_KINDS: Record<string, (doc: Obj) => void> = {
  'keda.sh/v1alpha1/ScaledObject': checkScaledObject,
};

/** The YAML files of deploy/k8s/, kustomization.yaml included. */
export function yamlFiles(): string[] {
  return readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();
}

export function parseFile(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(path.join(K8S_DIR, file), 'utf8'));
  assert.ok(Array.isArray(docs), `${file}: not a YAML stream`);
  const out: Obj[] = [];
  for (const doc of docs) {
    assert.deepEqual(doc.errors.map((e) => e.message), [], `${file}: YAML errors`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    assert.ok(isObj(value), `${file}: each document is a mapping`);
    out.push(value);
  }
  return out;
}

/** Every Kubernetes object under deploy/k8s/ (all files but kustomization.yaml). */
export function loadManifests(): Manifest[] {
  return yamlFiles()
    .filter((f) => f !== 'kustomization.yaml')
    .flatMap((file) =>
      parseFile(file).map((doc) => {
        const metadata = isObj(doc.metadata) ? doc.metadata : {};
        return { file, kind: String(doc.kind), apiVersion: String(doc.apiVersion), name: String(metadata.name), doc };
      }),
    );
}

export function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Validates `doc` with the model's schema (throws on an invalid document) and returns the paths of
 * fields the schema never looked at. The schema's validator reads each property it knows, and
 * iterates maps such as labels, so a key it never read is one Kubernetes has no field for.
 */
export function unknownFields(model: Validating, doc: Obj): string[] {
  const reads = new WeakMap<object, Set<string>>();
  const proxies = new WeakMap<object, unknown>();
  const watch = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    const known = proxies.get(value);
    if (known) return known;
    const seen = new Set<string>();
    reads.set(value, seen);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') seen.add(key);
        return watch(Reflect.get(target, key, receiver));
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  // validate() runs the schema on `this`, which here is the watched document itself.
  model.prototype.validate.call(watch(doc));
  const unknown: string[] = [];
  const walk = (value: unknown, at: string) => {
    if (Array.isArray(value)) value.forEach((item, i) => walk(item, `${at}[${i}]`));
    else if (isObj(value)) {
      for (const [key, child] of Object.entries(value)) {
        if (!reads.get(value)?.has(key)) unknown.push(`${at}.${key}`);
        walk(child, `${at}.${key}`);
      }
    }
  };
  walk(doc, '');
  return unknown;
}

/** Validates a document of a kind in MODELS or CUSTOM_KINDS, unknown fields included. */
export function validateManifest(m: Manifest): void {
  const key = `${m.apiVersion}/${m.kind}`;
  const model = MODELS[key];
  const custom = CUSTOM_KINDS[key];
  assert.ok(model || custom, `${m.file}: no schema for ${key}; add its model to MODELS, or a check to CUSTOM_KINDS`);
  if (custom) return custom(m.doc);
  assert.deepEqual(unknownFields(model, m.doc), [], `${m.file} ${m.kind}/${m.name}: fields Kubernetes does not have`);
}

function onlyKeys(value: unknown, allowed: string[], at: string): Obj {
  assert.ok(isObj(value), `${at}: a mapping`);
  for (const key of Object.keys(value)) assert.ok(allowed.includes(key), `${at}.${key}: not a field of KEDA's ScaledObject`);
  return value;
}

const isCount = (v: unknown) => v === undefined || (Number.isInteger(v) && (v as number) >= 0);

/**
 * KEDA's ScaledObject (keda.sh/v1alpha1), whose schema kubernetes-models does not carry: the
 * fields of KEDA 2's CRD that the example may use, their types, and the HPA behavior it passes
 * through, validated with Kubernetes' own schema for it.
 */
export function checkScaledObject(doc: Obj): void {
  onlyKeys(doc, ['apiVersion', 'kind', 'metadata', 'spec'], 'ScaledObject');
  const metadata = onlyKeys(doc.metadata, ['name', 'namespace', 'labels', 'annotations'], 'metadata');
  assert.equal(typeof metadata.name, 'string');
  const spec = onlyKeys(
    doc.spec,
    ['scaleTargetRef', 'pollingInterval', 'cooldownPeriod', 'initialCooldownPeriod', 'idleReplicaCount', 'minReplicaCount', 'maxReplicaCount', 'fallback', 'advanced', 'triggers'],
    'spec',
  );
  const target = onlyKeys(spec.scaleTargetRef, ['name', 'kind', 'apiVersion', 'envSourceContainerName'], 'spec.scaleTargetRef');
  assert.equal(typeof target.name, 'string', 'spec.scaleTargetRef.name');
  for (const field of ['pollingInterval', 'cooldownPeriod', 'initialCooldownPeriod', 'idleReplicaCount', 'minReplicaCount', 'maxReplicaCount']) {
    assert.ok(isCount(spec[field]), `spec.${field}: a whole number`);
  }
  assert.ok((spec.minReplicaCount as number) <= (spec.maxReplicaCount as number), 'minReplicaCount <= maxReplicaCount');
  if (spec.advanced !== undefined) {
    const advanced = onlyKeys(spec.advanced, ['restoreToOriginalReplicaCount', 'horizontalPodAutoscalerConfig', 'scalingModifiers'], 'spec.advanced');
    if (advanced.horizontalPodAutoscalerConfig !== undefined) {
      const hpa = onlyKeys(advanced.horizontalPodAutoscalerConfig, ['name', 'behavior'], 'spec.advanced.horizontalPodAutoscalerConfig');
      if (hpa.behavior !== undefined) {
        assert.ok(isObj(hpa.behavior));
        assert.deepEqual(unknownFields(HorizontalPodAutoscalerBehavior, hpa.behavior), [], 'HPA behavior fields');
      }
    }
  }
  assert.ok(Array.isArray(spec.triggers) && spec.triggers.length > 0, 'spec.triggers: at least one');
  for (const [i, raw] of spec.triggers.entries()) {
    const trigger = onlyKeys(raw, ['type', 'name', 'metadata', 'authenticationRef', 'metricType', 'useCachedMetrics'], `spec.triggers[${i}]`);
    assert.equal(trigger.type, 'prometheus', 'the example scales on Prometheus queries');
    const metadata = onlyKeys(trigger.metadata, ['serverAddress', 'query', 'threshold', 'activationThreshold', 'namespace', 'ignoreNullValues', 'unsafeSsl'], `spec.triggers[${i}].metadata`);
    // KEDA's trigger metadata is a map of strings: a bare YAML number is refused by the CRD.
    for (const [key, value] of Object.entries(metadata)) assert.equal(typeof value, 'string', `spec.triggers[${i}].metadata.${key}: a string`);
    assert.doesNotThrow(() => new URL(metadata.serverAddress as string), 'serverAddress is a URL');
    assert.ok(Number(metadata.threshold) > 0, 'threshold: a positive number');
    assert.ok(typeof metadata.query === 'string' && metadata.query.length > 0);
  }
}
