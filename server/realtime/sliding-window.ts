// Events per connection within a sliding window (bad messages per minute): exact, unlike a token
// bucket, so "more than N in any minute" means what it says. Memory is bounded by the caller, who
// acts once the count passes its limit.

export class SlidingWindowCounter {
  private readonly times: number[] = [];
  private head = 0;

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Records one event now; returns how many events fell within the window, this one included. */
  add(): number {
    const t = this.now();
    this.times.push(t);
    while (this.times[this.head] <= t - this.windowMs) this.head++;
    // Drop expired entries in bulk, not one shift (O(n)) per event.
    if (this.head > 64 && this.head * 2 > this.times.length) {
      this.times.splice(0, this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }
}
