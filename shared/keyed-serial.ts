/**
 * Runs tasks one at a time per key, in the order they were given, and keys concurrently with
 * each other: a device's messages reach the store in order whatever its latency. A key's entry
 * is dropped once its last task settled, so memory follows the keys that are busy, not all seen.
 */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `task` after the tasks already given for `key`; resolves or rejects as it does. */
  run<T>(key: string, task: () => T | Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with a task queued or running. */
  get busy(): number {
    return this.tails.size;
  }
}
