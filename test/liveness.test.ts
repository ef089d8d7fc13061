// The shared sweep behind the message deadline (4004) and the session idle timeout (4008), and the
// sliding window behind the bad-message limit, on a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode } from '../shared/protocol.js';
import { LivenessSweep, type WatchedSocket } from '../server/realtime/liveness.js';
import { SlidingWindowCounter } from '../server/realtime/sliding-window.js';

class FakeSocket implements WatchedSocket {
  pings: Uint8Array[] = [];
  closedWith: number | undefined;
  activityAt = 0;
  open = 0;
  ping(payload: Uint8Array) {
    this.pings.push(payload);
  }
  close(code: number) {
    this.closedWith = code;
  }
  lastActivityAt() {
    return this.activityAt;
  }
  openRequests() {
    return this.open;
  }
  /** Answers the last ping, as browsers and `ws` do. */
  answer(sweep: LivenessSweep) {
    const last = this.pings.at(-1)!;
    sweep.pong(this, Uint8Array.from(last).buffer);
  }
}

function setup(messageDeadlineMs: number, sessionIdleMs: number) {
  let now = 0;
  const closes: string[] = [];
  const sweep = new LivenessSweep({ messageDeadlineMs, sessionIdleMs, closed: (r) => closes.push(r), now: () => now });
  /** Advances the clock in sweep-sized ticks, calling `each` before every sweep. */
  const advance = (ms: number, each: () => void = () => {}) => {
    for (const end = now + ms; now < end; ) {
      now = Math.min(end, now + sweep.intervalMs);
      each();
      sweep.sweep();
    }
  };
  return { sweep, closes, advance, clock: () => now };
}

test('a socket that answers its pings is never closed for the deadline', () => {
  const { sweep, advance, closes } = setup(4000, 0);
  const socket = new FakeSocket();
  sweep.add(socket);
  advance(60_000, () => socket.pings.length && socket.answer(sweep));
  assert.equal(socket.closedWith, undefined);
  // One ping per half deadline, not one per sweep.
  assert.ok(socket.pings.length >= 29 && socket.pings.length <= 31, `${socket.pings.length} pings`);
  assert.deepEqual(closes, []);
});

test('a ping left unanswered closes with 4004 within 1.5 deadlines', () => {
  const { sweep, advance, closes, clock } = setup(4000, 0);
  const socket = new FakeSocket();
  sweep.add(socket);
  advance(5_000);
  assert.equal(socket.closedWith, undefined, 'not before the deadline has passed since the ping');
  advance(1_000);
  assert.equal(socket.closedWith, CloseCode.MessageDeadline);
  assert.ok(clock() <= 6_000);
  assert.deepEqual(closes, ['message_deadline']);
});

test('pongs to pings the sweep did not send (uWS keep-alives) do not count', () => {
  const { sweep, advance } = setup(4000, 0);
  const socket = new FakeSocket();
  sweep.add(socket);
  advance(2_000);
  assert.equal(socket.pings.length, 1);
  sweep.pong(socket, new ArrayBuffer(0));
  sweep.pong(socket, Uint8Array.from([0, 0, 0, 99]).buffer);
  advance(4_000);
  assert.equal(socket.closedWith, CloseCode.MessageDeadline);
});

test('idle: closed with 4008 after the timeout without requests, kept while requests arrive or run', () => {
  const { sweep, advance, clock, closes } = setup(4000, 3000);
  const idle = new FakeSocket();
  const active = new FakeSocket();
  const busy = new FakeSocket();
  for (const s of [idle, active, busy]) sweep.add(s);
  busy.open = 1;
  advance(10_000, () => {
    for (const s of [idle, active, busy]) if (s.pings.length) s.answer(sweep);
    if (clock() % 2000 === 0) active.activityAt = clock();
  });
  assert.equal(idle.closedWith, CloseCode.Idle);
  assert.equal(active.closedWith, undefined);
  assert.equal(busy.closedWith, undefined, 'a running request is not idleness');
  assert.deepEqual(closes, ['idle']);
  busy.open = 0;
  advance(3_000, () => busy.answer(sweep));
  assert.equal(busy.closedWith, CloseCode.Idle, 'idle counts from when the last request ended');
  assert.deepEqual(closes, ['idle', 'idle', 'idle'], 'and the active one, silent for 3 s as well');
  assert.equal(active.closedWith, CloseCode.Idle);
});

test('an idle timeout of 0 never closes', () => {
  const { sweep, advance } = setup(4000, 0);
  const socket = new FakeSocket();
  sweep.add(socket);
  advance(100_000, () => socket.pings.length && socket.answer(sweep));
  assert.equal(socket.closedWith, undefined);
});

test('the sliding window counts exactly the events of the last window', () => {
  let now = 0;
  const window = new SlidingWindowCounter(60_000, () => now);
  for (let i = 1; i <= 20; i++) {
    assert.equal(window.add(), i);
    now += 1000;
  }
  now = 60_500; // events at 0 s and 0..0.5 s have left the window
  assert.equal(window.add(), 20);
  now = 1_000_000;
  assert.equal(window.add(), 1);
  // Many events spread out never grow it past the window's share.
  for (let i = 0; i < 100_000; i++) {
    now += 1000;
    assert.ok(window.add() <= 60);
  }
});
