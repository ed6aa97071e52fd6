/**
 * A small coverage-guided fuzzer on V8's own block coverage (node:inspector, Profiler.takePreciseCoverage).
 *
 * Why not Jazzer.js: @jazzer.js/core 4.0.0 installs from npm alone, but its prebuilt libFuzzer addon needs glibc 2.38
 * (this machine and Debian 12 have 2.36), older releases download their addon from GitHub at install time, and
 * building it needs LLVM's sources. No other coverage-guided fuzzer on npm fits, so this one uses what V8 already counts.
 *
 * The loop: mutate corpus entries (bytes, dictionary tokens, JSON structure, splices), run the target on each, and keep
 * an input when it reaches a block of the measured files that no earlier input reached. Taking coverage costs ~20 ms
 * (V8 walks the heap), so inputs run in batches with one take per batch; a batch that reached something new is
 * bisected (one take per half) down to the inputs that did. Everything is driven by one seeded PRNG: the same seed and
 * run count give the same executions.
 */
import { Session } from "node:inspector";

export interface FuzzTarget {
  name: string;
  /** Substrings of the script URLs whose blocks count as coverage (e.g. "src/carriers/twilio/codec.ts"). */
  files: string[];
  /** Throws when an invariant is violated. */
  run(input: Buffer): void;
  /** Tokens worth inserting (field names, escapes, numbers). */
  dictionary: string[];
  maxLen: number;
  /** Leading bytes that are not part of the text (e.g. a mode byte): JSON mutations leave them alone. */
  header?: number;
}

export interface Failure {
  input: Buffer;
  error: string;
}

export interface FuzzResult {
  target: string;
  executions: number;
  seconds: number;
  corpus: number;
  /** Code bytes of the measured files that ran, of the bytes in the functions V8 reported (called at least once). */
  bytesCovered: number;
  bytesSeen: number;
  functionsCovered: number;
  /** Coverage takes and the seconds they cost (the rest is mutation and the target). */
  takes: number;
  takeSeconds: number;
  failures: Failure[];
  /** Inputs added to the corpus during the run (not the seeds). */
  found: Buffer[];
}

interface ScriptCoverage {
  url: string;
  functions: { functionName: string; ranges: { startOffset: number; endOffset: number; count: number }[] }[];
}

/** mulberry32: small, fast, seedable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Coverage {
  private readonly session = new Session();
  /**
   * Code bytes of the measured files: in functions V8 reported (seen), and that ran (covered), over the whole run.
   * Coverage is compared as bytes that ran, not as V8's ranges: V8 merges a block that ran as often as its parent into
   * the parent, so a batch and the single input in it that reached a branch report different ranges, while the
   * bytes a batch ran are exactly the union of what its inputs ran (which bisection relies on).
   */
  private readonly seenBytes = new Map<string, Uint8Array>();
  private readonly coveredBytes = new Map<string, Uint8Array>();
  readonly functions = new Set<string>();
  /** Coverage takes, and the time they cost (ms). */
  takes = 0;
  takeMs = 0;

  constructor(private readonly files: string[]) {
    this.session.connect();
    this.post("Profiler.enable");
    this.post("Profiler.startPreciseCoverage", { callCount: true, detailed: true });
  }

  /** In-process inspector calls complete synchronously; the callback has run when post() returns. */
  private post(method: string, params?: object): unknown {
    let out: unknown;
    let error: Error | null = null;
    this.session.post(method, params, (e, r) => {
      error = e;
      out = r;
    });
    if (error) throw error;
    return out;
  }

  private bytes(map: Map<string, Uint8Array>, url: string, end: number): Uint8Array {
    let a = map.get(url);
    if (!a || a.length < end) {
      const grown = new Uint8Array(Math.max(end, (a?.length ?? 0) * 2));
      if (a) grown.set(a);
      map.set(url, (a = grown));
    }
    return a;
  }

  /** Code bytes that ran since the last take (the take resets V8's counters) and never before, as "url offset". */
  take(): string[] {
    const t0 = performance.now();
    const { result } = this.post("Profiler.takePreciseCoverage") as { result: ScriptCoverage[] };
    this.takes++;
    this.takeMs += performance.now() - t0;
    const fresh: string[] = [];
    for (const script of result) {
      if (!this.files.some((f) => script.url.includes(f))) continue;
      for (const fn of script.functions) {
        const top = fn.ranges[0];
        if (!top) continue;
        const seen = this.bytes(this.seenBytes, script.url, top.endOffset);
        const covered = this.bytes(this.coveredBytes, script.url, top.endOffset);
        seen.fill(1, top.startOffset, top.endOffset);
        // Ranges come outermost first; an inner range overrides its parent's count for its span.
        const ran = new Uint8Array(top.endOffset - top.startOffset);
        for (const r of fn.ranges) ran.fill(r.count > 0 ? 1 : 0, r.startOffset - top.startOffset, r.endOffset - top.startOffset);
        for (let i = 0; i < ran.length; i++) if (ran[i] && !covered[top.startOffset + i]) fresh.push(`${script.url} ${top.startOffset + i}`);
        if (top.count > 0) this.functions.add(`${script.url}:${fn.functionName}:${top.startOffset}`);
      }
    }
    return fresh;
  }

  commit(keys: string[]): void {
    for (const k of keys) {
      const sp = k.lastIndexOf(" ");
      this.coveredBytes.get(k.slice(0, sp))![Number(k.slice(sp + 1))] = 1;
    }
  }

  /** Covered and seen code bytes, over all measured files. */
  totals(): { covered: number; seen: number } {
    let covered = 0;
    let seen = 0;
    for (const [url, s] of this.seenBytes) {
      const c = this.coveredBytes.get(url)!;
      for (let i = 0; i < s.length; i++)
        if (s[i]) {
          seen++;
          if (c[i]) covered++;
        }
    }
    return { covered, seen };
  }

  close(): void {
    this.post("Profiler.stopPreciseCoverage");
    this.session.disconnect();
  }
}

const INTERESTING_BYTES = [0x00, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x20, 0x0a, 0x7f, 0x80, 0xc3, 0xff, 0x3d, 0x26, 0x25, 0x2b, 0x2f, 0x30, 0x39];
const JSON_VALUES: unknown[] = ["", "x", '"', "\\", "\u0000", "\ud800", "é", "1", "-1", "1e400", "__proto__", 0, -0, 1, -1, 1e21, 2 ** 53, 1.5, null, true, false, [], {}, ["inbound"], { a: "b" }];

export class Mutator {
  constructor(
    private readonly rnd: () => number,
    private readonly dict: Buffer[],
    private readonly maxLen: number,
    private readonly header = 0,
  ) {}

  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** A dictionary token, or a random byte when there is no dictionary. */
  private token(): Buffer {
    return this.dict.length ? this.pick(this.dict) : Buffer.from([this.int(256)]);
  }

  mutate(base: Buffer, corpus: readonly Buffer[]): Buffer {
    let b = base;
    const n = 1 + this.int(this.rnd() < 0.5 ? 2 : 6);
    for (let i = 0; i < n; i++) b = this.once(b, corpus);
    return b.length > this.maxLen ? b.subarray(0, this.maxLen) : b;
  }

  private once(b: Buffer, corpus: readonly Buffer[]): Buffer {
    const at = () => this.int(b.length + 1);
    switch (this.int(11)) {
      case 0: {
        if (!b.length) return Buffer.from([this.int(256)]);
        const c = Buffer.from(b);
        c[this.int(c.length)]! ^= 1 << this.int(8);
        return c;
      }
      case 1: {
        if (!b.length) return Buffer.from([this.pick(INTERESTING_BYTES)]);
        const c = Buffer.from(b);
        c[this.int(c.length)] = this.rnd() < 0.7 ? this.pick(INTERESTING_BYTES) : this.int(256);
        return c;
      }
      case 2: {
        const p = at();
        const ins = Buffer.from(Array.from({ length: 1 + this.int(4) }, () => (this.rnd() < 0.5 ? this.pick(INTERESTING_BYTES) : this.int(256))));
        return Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]);
      }
      case 3: {
        if (b.length < 2) return b;
        const p = this.int(b.length);
        const len = 1 + this.int(Math.min(16, b.length - p));
        return Buffer.concat([b.subarray(0, p), b.subarray(p + len)]);
      }
      case 4: {
        // Copy a chunk of the input elsewhere in it.
        if (!b.length) return b;
        const p = this.int(b.length);
        const chunk = b.subarray(p, p + 1 + this.int(32));
        const q = at();
        return Buffer.concat([b.subarray(0, q), chunk, b.subarray(q)]);
      }
      case 5:
      case 6: {
        const p = at();
        return Buffer.concat([b.subarray(0, p), this.token(), b.subarray(p)]);
      }
      case 7: {
        // Overwrite a span with a token.
        const p = at();
        const tok = this.token();
        return Buffer.concat([b.subarray(0, p), tok, b.subarray(Math.min(b.length, p + tok.length))]);
      }
      case 8: {
        // Splice: a prefix of this input and a suffix of another.
        const other = this.pick(corpus);
        return Buffer.concat([b.subarray(0, at()), other.subarray(this.int(other.length + 1))]);
      }
      case 9: {
        // A run of digits becomes an interesting number.
        const s = b.toString("latin1");
        const runs = [...s.matchAll(/-?\d+/g)];
        if (!runs.length) return b;
        const m = this.pick(runs);
        const num = this.pick(["0", "-1", "1", "007", "1e400", "99999999999999999999", "4294967296", "-0", "1.5", "NaN", ""]);
        return Buffer.from(s.slice(0, m.index) + num + s.slice(m.index! + m[0].length), "latin1");
      }
      default:
        return this.jsonMutation(b);
    }
  }

  /** Parse as JSON and change its structure: drop, retype, rename or duplicate a field (order kept where possible). */
  private jsonMutation(input: Buffer): Buffer {
    const head = input.subarray(0, this.header);
    const out = this.jsonMutationOf(input.subarray(this.header));
    return head.length ? Buffer.concat([head, out]) : out;
  }

  private jsonMutationOf(b: Buffer): Buffer {
    let v: unknown;
    try {
      v = JSON.parse(b.toString());
    } catch {
      return b;
    }
    const objects: Record<string, unknown>[] = [];
    const walk = (x: unknown) => {
      if (x && typeof x === "object") {
        objects.push(x as Record<string, unknown>);
        for (const y of Object.values(x)) walk(y);
      }
    };
    walk(v);
    if (!objects.length) return Buffer.from(JSON.stringify(this.pick(JSON_VALUES)));
    const o = this.pick(objects);
    const keys = Object.keys(o);
    const k = keys.length ? this.pick(keys) : "event";
    const dictKey = () => {
      const t = this.token().toString();
      const m = /^"([^"\\]*)"/.exec(t);
      return m ? m[1]! : t;
    };
    switch (this.int(5)) {
      case 0:
        delete o[k];
        break;
      case 1:
        o[k] = this.pick(JSON_VALUES);
        break;
      case 2: {
        const val = o[k];
        delete o[k];
        o[dictKey()] = val;
        break;
      }
      case 3:
        o[dictKey()] = this.rnd() < 0.5 ? this.pick(JSON_VALUES) : o[k];
        break;
      default: {
        // A duplicate key, which JSON.stringify cannot write: append `"k":value` before the closing brace.
        const s = JSON.stringify(v);
        const close = s.lastIndexOf("}");
        if (close < 1) return Buffer.from(s);
        const dup = `${s[close - 1] === "{" ? "" : ","}${JSON.stringify(k)}:${JSON.stringify(this.pick(JSON_VALUES))}`;
        return Buffer.from(s.slice(0, close) + dup + s.slice(close));
      }
    }
    return Buffer.from(JSON.stringify(v));
  }
}

export interface FuzzOptions {
  seed: number;
  /** Stop after this many executions, or after this many milliseconds (whichever comes first; at least one). */
  runs?: number;
  ms?: number;
  /** Largest batch of inputs between two coverage takes (default 2048). */
  batch?: number;
  /** Stop at the first failure (default true). */
  stopOnFailure?: boolean;
}

export function fuzz(target: FuzzTarget, seeds: Buffer[], o: FuzzOptions): FuzzResult {
  const cov = new Coverage(target.files);
  const rnd = prng(o.seed);
  const mut = new Mutator(rnd, target.dictionary.map((t) => Buffer.from(t)), target.maxLen, target.header);
  const corpus: Buffer[] = seeds.length ? [...seeds] : [Buffer.from("{}")];
  const found: Buffer[] = [];
  const failures: Failure[] = [];
  const maxRuns = o.runs ?? Infinity;
  const deadline = o.ms === undefined ? Infinity : performance.now() + o.ms;
  const batchSize = o.batch ?? 2048;
  const stop = o.stopOnFailure ?? true;
  const t0 = performance.now();
  let executions = 0;

  const exec = (input: Buffer): void => {
    executions++;
    try {
      target.run(input);
    } catch (e) {
      failures.push({ input, error: (e as Error)?.stack ?? String(e) });
    }
  };
  /** Run `inputs`, then keep those that reached new blocks: bisect down to single inputs. */
  const attribute = (inputs: Buffer[]): void => {
    for (const x of inputs) exec(x);
    const fresh = cov.take();
    if (!fresh.length) return;
    if (inputs.length === 1) {
      cov.commit(fresh);
      corpus.push(inputs[0]!);
      found.push(inputs[0]!);
      return;
    }
    const mid = inputs.length >> 1;
    attribute(inputs.slice(0, mid));
    attribute(inputs.slice(mid));
  };

  // The seeds first, each on its own, so their coverage is the baseline.
  for (const s of corpus) {
    exec(s);
    cov.commit(cov.take());
  }
  // Batches grow while nothing new turns up (a take costs what thousands of executions do) and shrink when it does.
  let size = Math.min(64, batchSize);
  while (executions < maxRuns && performance.now() < deadline && !(stop && failures.length)) {
    const n = Math.min(size, maxRuns - executions);
    const before = found.length;
    const batch: Buffer[] = [];
    // Half the time, one of the latest finds: they are where new coverage was last reached.
    for (let i = 0; i < n; i++) batch.push(mut.mutate(rnd() < 0.5 ? mut.pick(corpus.slice(-8)) : mut.pick(corpus), corpus));
    attribute(batch);
    size = found.length > before ? Math.max(16, size >> 1) : Math.min(batchSize, size * 2);
  }
  const seconds = (performance.now() - t0) / 1000;
  const result: FuzzResult = {
    target: target.name,
    executions,
    seconds,
    corpus: corpus.length,
    bytesCovered: cov.totals().covered,
    bytesSeen: cov.totals().seen,
    functionsCovered: cov.functions.size,
    takes: cov.takes,
    takeSeconds: cov.takeMs / 1000,
    failures,
    found,
  };
  cov.close();
  return result;
}
