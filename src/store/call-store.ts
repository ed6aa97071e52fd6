import { mkdir, open, readFile, readdir, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { applyEvent, emptyRecord, type CallRecord, type RecordEvent } from "./call-record.ts";

/** Call SIDs become file names: only a safe alphabet gets that far. */
const SAFE_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isSafeCallId(id: string): boolean {
  return SAFE_ID.test(id);
}

/**
 * Durable call records: one append-only JSON-lines file of events per call under `<dataDir>/calls/`. Events are
 * buffered and written, then fsync'd, at every turn and at hang-up, so a killed process loses at most the turn in
 * flight. Writes of one call are serialized; calls never wait on each other.
 */
/** Where journal lines are copied as they are appended (the fleet's shared records, src/state/shared-records.ts). */
export interface RecordMirror {
  add(callSid: string, line: string, t: number): void;
  /** The journal flushed (a turn, the hang-up): send what waits now. */
  flush(callSid: string): void;
  /** The journal closed. */
  forgetWhenFlushed(callSid: string): void;
}

export class CallStore {
  private readonly dir: string;
  private readonly journals = new Map<string, Journal>();
  /** Per call, the last of its appendOnce writes (they run one after another). */
  private readonly appending = new Map<string, Promise<void>>();
  /** Set when the records are shared (REDIS_URL); null: local files only. */
  mirror: RecordMirror | null = null;

  constructor(dataDir: string) {
    this.dir = path.resolve(dataDir, "calls");
  }

  /** The same records, with every journal line of this view also copied to `mirror` (one app's shared records). */
  withMirror(mirror: RecordMirror): CallStore {
    const view = new CallStore(path.dirname(this.dir));
    view.mirror = mirror;
    return view;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  fileOf(callSid: string): string {
    if (!isSafeCallId(callSid)) throw new Error(`unsafe call id ${JSON.stringify(callSid)}`);
    return path.join(this.dir, `${callSid}.jsonl`);
  }

  /** Open (or reopen after a restart) the journal of a call. */
  journal(callSid: string): Journal {
    let j = this.journals.get(callSid);
    if (!j) {
      j = new Journal(this.fileOf(callSid), () => this.journals.delete(callSid), this.mirror, callSid);
      this.journals.set(callSid, j);
    }
    return j;
  }

  /**
   * Append one event to a call whose runtime is gone (a late status callback, the outcome, a recording's last write),
   * after its own journal closed. One at a time: two at once would share a journal that the first is closing.
   */
  appendOnce(callSid: string, e: RecordEvent): Promise<void> {
    const run = (this.appending.get(callSid) ?? Promise.resolve()).then(async () => {
      await this.journals.get(callSid)?.close();
      const j = this.journal(callSid);
      j.append(e);
      await j.close();
    });
    const tail = run.catch(() => {});
    this.appending.set(callSid, tail);
    void tail.then(() => {
      if (this.appending.get(callSid) === tail) this.appending.delete(callSid);
    });
    return run;
  }

  async read(callSid: string): Promise<CallRecord | null> {
    if (!isSafeCallId(callSid)) return null;
    let text: string;
    try {
      text = await readFile(this.fileOf(callSid), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    return foldLines(callSid, text);
  }

  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith(".jsonl")).map((n) => n.slice(0, -6));
  }

  async close(): Promise<void> {
    await Promise.all([...this.journals.values()].map((j) => j.close()));
  }
}

/** A record from journal text; a torn last line (process killed mid-write) is skipped, not fatal. */
export function foldLines(callSid: string, text: string): CallRecord {
  const lines = text.split("\n");
  let r: CallRecord | null = null;
  for (const line of lines) {
    if (!line) continue;
    let e: RecordEvent;
    try {
      e = JSON.parse(line) as RecordEvent;
    } catch {
      continue;
    }
    r ??= emptyRecord(callSid, e.t);
    applyEvent(r, e);
  }
  return r ?? emptyRecord(callSid, 0);
}

export class Journal {
  private pending: string[] = [];
  private handle: Promise<FileHandle> | null = null;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    readonly file: string,
    private readonly onClose: () => void,
    private readonly mirror: RecordMirror | null = null,
    private readonly callSid = "",
  ) {}

  append(e: RecordEvent): void {
    if (this.closed || this.closing) return;
    const line = JSON.stringify(e);
    this.pending.push(line);
    this.mirror?.add(this.callSid, line, e.t);
  }

  /** Lines that are already in the shared record (a call taken over): written to this disk only, not mirrored again. */
  appendLocal(lines: string[]): void {
    if (this.closed || this.closing) return;
    this.pending.push(...lines);
  }

  /** Write and fsync everything appended so far. */
  flush(): Promise<void> {
    this.mirror?.flush(this.callSid);
    if (!this.pending.length) return this.chain;
    const data = this.pending.join("\n") + "\n";
    this.pending = [];
    const write = this.chain.then(async () => {
      this.handle ??= open(this.file, "a");
      const fh = await this.handle;
      await fh.appendFile(data);
      await fh.datasync();
    });
    // One failed write (disk full, say) is reported to its caller; later writes still get their turn.
    this.chain = write.catch(() => {});
    return write;
  }

  /** Flush and close; every caller waits for the same close. Appends after it began are refused. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flush();
      this.mirror?.forgetWhenFlushed(this.callSid);
      this.closed = true;
      this.onClose();
      if (this.handle) await (await this.handle).close();
    })();
    return this.closing;
  }
}
