/** A seeded PRNG (mulberry32) and the choices fuzzers make with it: the same seed, the same cases. */
export class Prng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A few byte-level mutations: flips, truncation, insertion, deletion, duplication. */
  mutate(input: Uint8Array): Buffer {
    let data = Buffer.from(input);
    const rounds = 1 + this.int(4);
    for (let r = 0; r < rounds; r++) {
      const at = data.length === 0 ? 0 : this.int(data.length);
      switch (this.int(6)) {
        case 0:
          if (data.length > 0) data[at] = data[at]! ^ (1 << this.int(8));
          break;
        case 1:
          data = data.subarray(0, at);
          break;
        case 2:
          data = Buffer.concat([data.subarray(0, at), this.bytes(1 + this.int(16)), data.subarray(at)]);
          break;
        case 3:
          data = Buffer.concat([data.subarray(0, at), data.subarray(at + 1 + this.int(16))]);
          break;
        case 4:
          data = Buffer.concat([data, data.subarray(at, at + 1 + this.int(64))]);
          break;
        default:
          if (data.length > 0) data[at] = this.pick([0x00, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x5b]);
      }
    }
    return data;
  }
}

/** Seed from `APT_OSTREE_FUZZ_SEED` or the given default. */
export function fuzzSeed(fallback: number): number {
  const text = process.env.APT_OSTREE_FUZZ_SEED;
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : fallback;
}
