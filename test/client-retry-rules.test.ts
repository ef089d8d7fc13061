// The SDK's retry rules as plain functions: reading Retry-After, where /readyz is, how a server's
// wait is spread, how long a retryable error's input waits, and what each close code asks for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, MAX_ADVISED_DELAY_MS, spread } from '../client/backoff.js';
import { defaultReadinessUrl, parseRetryAfter } from '../client/refusal.js';
import { afterClose, goingAwayDelay, isRetryable, requestRetryDelay } from '../client/retry-policy.js';
import { CloseCode, ErrorCode, type ErrorMessage } from '../shared/protocol.js';

const error = (code: ErrorMessage['code'], retryAfterMs?: number): ErrorMessage =>
  ({ type: 'error', id: 1, code, message: '', ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });

test('Retry-After: delay-seconds or an HTTP date; anything else is unknown', () => {
  assert.equal(parseRetryAfter('5'), 5000);
  assert.equal(parseRetryAfter(' 0 '), 0);
  assert.equal(parseRetryAfter(['1', '7']), 1000, 'a repeated header: the first');
  const now = Date.parse('Mon, 30 Nov 2026 23:00:00 GMT');
  assert.equal(parseRetryAfter('Mon, 30 Nov 2026 23:00:03 GMT', now), 3000);
  assert.equal(parseRetryAfter('Mon, 30 Nov 2026 22:00:00 GMT', now), 0, 'a date in the past: now');
  for (const junk of [undefined, null, '', '1.5', '-1', 'soon', 42]) assert.equal(parseRetryAfter(junk), undefined, String(junk));
});

test('/readyz sits beside /v1/realtime, over http(s), without the token', () => {
  assert.equal(defaultReadinessUrl('ws://127.0.0.1:8080/v1/realtime'), 'http://127.0.0.1:8080/readyz');
  assert.equal(defaultReadinessUrl('wss://example.com/v1/realtime?token=secret'), 'https://example.com/readyz');
  assert.equal(defaultReadinessUrl('wss://example.com/imagegen/v1/realtime'), 'https://example.com/imagegen/readyz');
  assert.equal(defaultReadinessUrl('ws://example.com/other'), 'http://example.com/readyz');
  assert.equal(defaultReadinessUrl('not a url'), undefined);
});

test("a server's wait is kept, spread by up to a fifth (at least 50 ms), and capped", () => {
  assert.equal(spread(1000, () => 0), 1000);
  assert.equal(spread(1000, () => 0.999999), 1200);
  assert.equal(spread(0, () => 0.999999), 50);
  assert.equal(spread(86_400_000, () => 0), MAX_ADVISED_DELAY_MS);
  assert.equal(goingAwayDelay(0, () => 0.999999), 250, 'a crowd told to leave at once is spread over 250 ms');
  assert.equal(goingAwayDelay(2000, () => 0), 2000);
  assert.equal(goingAwayDelay(undefined, () => 0), 0);
});

test('backoff: a server-advised wait replaces the exponential one but still counts as a failure; restore undoes a reset', () => {
  const backoff = new Backoff({ baseDelayMs: 30_000, maxDelayMs: 60_000 }, () => 0.5);
  assert.equal(backoff.advised(1000), 1100);
  assert.equal(backoff.attempts, 1);
  assert.equal(backoff.next(), 30_000, 'the exponential schedule went on counting (2 x base x 0.5)');
  backoff.reset();
  backoff.restore(2);
  assert.equal(backoff.attempts, 2);
});

test('retryable errors and their waits', () => {
  const retryable = [ErrorCode.NotReady, ErrorCode.ShuttingDown, ErrorCode.EngineRestarted, ErrorCode.Overloaded, ErrorCode.RateLimited];
  for (const code of Object.values(ErrorCode)) assert.equal(isRetryable(error(code)), retryable.includes(code as never), code);
  const low = () => 0;
  assert.equal(requestRetryDelay(error(ErrorCode.Overloaded, 300), undefined, low), 300, "the server's retryAfterMs");
  assert.equal(requestRetryDelay(error(ErrorCode.NotReady), undefined, low), 1000, 'a default when absent');
  assert.equal(requestRetryDelay(error(ErrorCode.RateLimited), { maxRequestsPerSecond: 4 }, low), 250, 'one token of the rate');
  assert.equal(requestRetryDelay(error(ErrorCode.RateLimited), undefined, low), 1000);
});

test('close codes of an open connection', () => {
  assert.equal(afterClose(CloseCode.GoingAway).kind, 'going_away');
  assert.equal(afterClose(CloseCode.Idle).kind, 'idle');
  assert.equal(afterClose(CloseCode.TooManyBadMessages).kind, 'misbehaved');
  assert.equal(afterClose(CloseCode.MessageDeadline).kind, 'misbehaved');
  for (const code of [1000, 1006, 1009, CloseCode.SlowReader, CloseCode.TokenExpired]) assert.equal(afterClose(code).kind, 'dropped', String(code));
});
