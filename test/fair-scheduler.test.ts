// The scheduler's admission and order, against a fake engine whose jobs finish when the test says:
// costs by pixels x steps, heavy jobs kept to their share of the slots, fair turns by cost, and
// the round-robin and latest-wins behaviour it had before.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ModelInfo } from '../shared/protocol.js';
import { ConfigError, loadConfig } from '../server/config.js';
import type { JobListener } from '../server/engine/engine.js';
import type { JobSpec } from '../server/engine/messages.js';
import { requestCost, type JobShape } from '../server/realtime/cost.js';
import { heavySlotsFor, Scheduler, type SchedulableSession, type SchedulerEngine } from '../server/realtime/scheduler.js';

const MODEL = { width: 256, height: 256, defaultSteps: 2, scheduler: 'euler_ancestral' } as const;
const LIGHT = { width: 256, height: 256, steps: 2, strength: 1, image: false };
const HEAVY = { width: 1024, height: 1024, steps: 8, strength: 1, image: false };

class FakeEngine implements SchedulerEngine {
  ready = true;
  info = MODEL as unknown as ModelInfo;
  readonly running = new Map<number, { job: JobSpec; listener: JobListener }>();
  /** Session names in the order their jobs were handed over. */
  readonly log: string[] = [];
  run(job: JobSpec, listener: JobListener): void {
    this.running.set(job.jobId, { job, listener });
    this.log.push(job.prompt);
  }
  cancel(): void {}
  /** Finishes the oldest running job of `name` (or the oldest of all). */
  finish(name?: string): void {
    const entry = [...this.running.values()].find((e) => name === undefined || e.job.prompt === name);
    assert.ok(entry, `no running job for ${name}`);
    this.running.delete(entry.job.jobId);
    entry.listener.onDone({ rgb: new Uint8Array(0), width: 0, height: 0 }, { textEncoder: 0, vaeEncoder: 0, steps: [], previews: 0, decode: 0, batchSizes: [], decoder: 'vae', decodes: 1 });
  }
  runningNames(): string[] {
    return [...this.running.values()].map((e) => e.job.prompt).sort();
  }
}

/** A client that always has its next request pending (running + pending kept full), like a stream. */
class StreamingSession implements SchedulableSession {
  pending: JobShape | undefined;
  private runningJob = false;
  constructor(readonly name: string, private readonly scheduler: Scheduler, public shape: JobShape, private streaming = true) {}
  request(shape = this.shape): void {
    this.pending = shape;
    if (!this.runningJob) this.scheduler.enqueue(this);
  }
  stop(): void {
    this.streaming = false;
  }
  peekPending(): JobShape | undefined {
    return this.pending;
  }
  takePending(): ReturnType<SchedulableSession['takePending']> {
    const shape = this.pending;
    if (!shape) return undefined;
    this.pending = this.streaming ? this.shape : undefined;
    this.runningJob = true;
    const { image, ...rest } = shape;
    const done = () => {
      this.runningJob = false;
      if (this.pending) this.scheduler.enqueue(this);
    };
    return {
      job: { ...rest, prompt: this.name, seed: 0, previews: false, ...(image ? { image: new Uint8Array(3) } : {}) },
      listener: { onStarted() {}, onPreview() {}, onDone: done, onCancelled: done, onFailed: done },
    };
  }
}

function setup(concurrency: number, heavyShare?: number) {
  const engine = new FakeEngine();
  const scheduler = new Scheduler(engine, concurrency, heavyShare);
  const session = (name: string, shape: JobShape) => new StreamingSession(name, scheduler, shape);
  return { engine, scheduler, session };
}

describe('request cost', () => {
  test('pixels x steps that will run, in default requests', () => {
    assert.equal(requestCost(LIGHT, MODEL), 1);
    assert.equal(requestCost(HEAVY, MODEL), 64);
    assert.equal(requestCost({ ...LIGHT, width: 512, steps: 1 }, MODEL), 1);
    // Image-to-image runs floor(steps x strength) steps; strength alone means nothing without an image.
    assert.equal(requestCost({ ...LIGHT, steps: 8, strength: 0.5, image: true }, MODEL), 2);
    assert.equal(requestCost({ ...LIGHT, steps: 8, strength: 0.5, image: false }, MODEL), 4);
    assert.equal(requestCost({ ...LIGHT, steps: 3, strength: 0.5, image: true }, MODEL), 0.5);
    // LCM runs every requested step whatever the strength.
    assert.equal(requestCost({ ...LIGHT, steps: 4, strength: 0.5, image: true }, { ...MODEL, scheduler: 'lcm', defaultSteps: 4 }), 1);
    // A request that will be refused still costs a step.
    assert.equal(requestCost({ ...LIGHT, steps: 1, strength: 0.5, image: true }, MODEL), 0.5);
  });

  test('heavy slots: a share of the batch, never none', () => {
    assert.deepEqual([1, 2, 4, 8, 64].map((c) => heavySlotsFor(c, 0.25)), [1, 1, 1, 2, 16]);
    assert.deepEqual([1, 4].map((c) => heavySlotsFor(c, 0)), [1, 1]);
    assert.deepEqual([1, 4].map((c) => heavySlotsFor(c, 1)), [1, 4]);
  });

  test('--heavy-share: a fraction from 0 to 1, a quarter by default', () => {
    assert.equal(loadConfig([], {}).heavyShare, 0.25);
    assert.equal(loadConfig(['--heavy-share', '0.5'], {}).heavyShare, 0.5);
    for (const bad of ['1.5', '-0.1', 'half']) assert.throws(() => loadConfig(['--heavy-share', bad], {}), ConfigError);
  });
});

describe('scheduler', () => {
  test('heavy requests that came first leave slots for light ones', () => {
    const { engine, session } = setup(4, 0.25);
    const heavy = [0, 1, 2, 3].map((i) => session(`heavy${i}`, HEAVY));
    const light = [0, 1].map((i) => session(`light${i}`, LIGHT));
    for (const s of [...heavy, ...light]) s.request();
    assert.deepEqual(engine.runningNames(), ['heavy0', 'light0', 'light1']);
    // Light requests come and go on their free slots while the heavy one runs.
    for (let i = 0; i < 5; i++) {
      engine.finish('light0');
      engine.finish('light1');
      assert.deepEqual(engine.runningNames(), ['heavy0', 'light0', 'light1']);
    }
  });

  test('heavy sessions take turns on their slot, each getting its share', () => {
    const { engine, session } = setup(4, 0.25);
    const heavy = [0, 1, 2, 3].map((i) => session(`heavy${i}`, HEAVY));
    for (const s of heavy) s.request();
    session('light', LIGHT).request();
    for (let i = 0; i < 8; i++) engine.finish(engine.runningNames().find((n) => n.startsWith('heavy')));
    assert.deepEqual(engine.log.filter((n) => n.startsWith('heavy')), ['heavy0', 'heavy1', 'heavy2', 'heavy3', 'heavy0', 'heavy1', 'heavy2', 'heavy3', 'heavy0']);
  });

  test('--heavy-share 1 lets heavy requests take every slot', () => {
    const { engine, session } = setup(4, 1);
    for (let i = 0; i < 4; i++) session(`heavy${i}`, HEAVY).request();
    session('light', LIGHT).request();
    assert.deepEqual(engine.runningNames(), ['heavy0', 'heavy1', 'heavy2', 'heavy3']);
  });

  test('a light-enough request (at most a batch of default requests) is not heavy', () => {
    const { engine, session } = setup(4, 0.25);
    session('long', { ...LIGHT, width: 512, height: 512, steps: 8 }).request(); // 16 units: heavy
    session('short', { ...LIGHT, width: 512, height: 512, steps: 1 }).request(); // 2 units
    session('long2', { ...LIGHT, width: 512, height: 512, steps: 8 }).request();
    assert.deepEqual(engine.runningNames(), ['long', 'short']);
  });

  test('turns are shared by cost: a session of 8-unit requests runs once per 8 default ones', () => {
    const { engine, session } = setup(1);
    session('big', { ...LIGHT, steps: 16 }).request();
    session('small', LIGHT).request();
    for (let i = 0; i < 34; i++) engine.finish();
    // Ordered by virtual finish time: the big request that took the idle engine at once has used its
    // share for the next 15 small ones' worth (its next one would finish at 16); from then on one
    // big turn per 8 small ones.
    const expected = ['big', ...Array(15).fill('small'), 'big', ...Array(8).fill('small'), 'big', ...Array(8).fill('small'), 'big'];
    assert.deepEqual(engine.log.join(' '), expected.join(' '));
  });

  test('equal costs are served round-robin in arrival order, one job at a time at concurrency 1', () => {
    const { engine, session } = setup(1);
    for (const name of ['a', 'b', 'c']) session(name, LIGHT).request();
    assert.equal(engine.running.size, 1);
    for (let i = 0; i < 5; i++) {
      engine.finish();
      assert.equal(engine.running.size, 1);
    }
    assert.equal(engine.log.join(''), 'abcabc');
  });

  test('an idle session banks no credit', () => {
    const { engine, session } = setup(1);
    session('busy', LIGHT).request();
    for (let i = 0; i < 10; i++) engine.finish();
    session('late', LIGHT).request();
    for (let i = 0; i < 6; i++) engine.finish();
    // 11 jobs for `busy` before `late` arrived; from then on they alternate.
    assert.equal(engine.log.slice(11).join(' '), 'late busy late busy late busy');
  });

  test('latest wins while waiting: the request handed over is the newest, charged at its own cost', () => {
    const { engine, session } = setup(4, 0.25);
    session('heavy', HEAVY).request();
    const changing = session('changing', LIGHT);
    changing.stop();
    engine.ready = false;
    changing.request(HEAVY);
    changing.request(LIGHT); // replaces the heavy one before it ran
    engine.ready = true;
    // The heavy slot is taken, but the newest request is light: it runs.
    session('x', LIGHT).request();
    assert.deepEqual(engine.runningNames(), ['changing', 'heavy', 'x']);
    assert.equal(engine.log.filter((n) => n === 'changing').length, 1);
    assert.deepEqual([...engine.running.values()].find((e) => e.job.prompt === 'changing')!.job.width, 256);
  });

  test('a heavy request waiting for its slot is not overtaken by later heavy sessions', () => {
    const { engine, session } = setup(2, 0.5);
    session('h1', HEAVY).request();
    session('h2', HEAVY).request();
    session('l', LIGHT).request();
    assert.deepEqual(engine.runningNames(), ['h1', 'l']);
    session('h3', HEAVY).request();
    engine.finish('h1');
    assert.deepEqual(engine.runningNames(), ['h2', 'l']);
    engine.finish('h2');
    assert.deepEqual(engine.runningNames(), ['h3', 'l']);
  });
});
