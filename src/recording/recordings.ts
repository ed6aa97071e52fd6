import { open, readdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { CallRecorder, type RecordingFile, type RecordingOpener } from "./recorder.ts";

/** A plain file, written at explicit positions (the header is patched in place as the data grows). */
export const openRecordingFile: RecordingOpener = async (file) => {
  const fh = await open(file, "w");
  return {
    async write(data, position) {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
        off += bytesWritten;
      }
    },
    close: () => fh.close(),
  } satisfies RecordingFile;
};

export interface RecordingStoreOptions {
  /** Recordings older than this are deleted (0: kept forever). */
  retentionDays: number;
  open?: RecordingOpener;
  log?: Logger;
  now?: () => number;
}

const DAY_MS = 86_400_000;
/** How often old recordings are looked for after the sweep at start. */
const SWEEP_EVERY_MS = 6 * 3_600_000;

/**
 * Call recordings on disk, beside the call records: `<DATA_DIR>/calls/<CallSid>.wav` (and `<CallSid>-<n>.wav` for the
 * n-th part of a call restored after a restart). Deletes those past their retention, and knows which are still being
 * finished, so a download waits for the last write.
 */
export class RecordingStore {
  readonly dir: string;
  private readonly finishing = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    dataDir: string,
    private readonly opts: RecordingStoreOptions,
  ) {
    this.dir = path.resolve(dataDir, "calls");
  }

  fileOf(callSid: string, part = 1): string {
    return path.join(this.dir, part > 1 ? `${callSid}-${part}.wav` : `${callSid}.wav`);
  }

  /** The path of a recording the record names (by its base name: a record cannot point outside the folder). */
  resolve(name: string): string {
    return path.join(this.dir, path.basename(name));
  }

  start(callSid: string, part: number, t0: number, onError: (message: string, code: string | null) => void): CallRecorder {
    return new CallRecorder(this.fileOf(callSid, part), t0, this.opts.open ?? openRecordingFile, onError);
  }

  /** A recording whose last writes are under way. */
  finishingUntil(callSid: string, done: Promise<void>): void {
    const p = done.finally(() => {
      if (this.finishing.get(callSid) === p) this.finishing.delete(callSid);
    });
    this.finishing.set(callSid, p);
  }

  /** Resolves once the call's recording is complete on disk (at once if it is not being finished). */
  async settled(callSid: string): Promise<void> {
    await this.finishing.get(callSid)?.catch(() => {});
  }

  /** Delete recordings older than the retention (by modification time, i.e. the call's end). Returns how many. */
  async sweep(): Promise<number> {
    const days = this.opts.retentionDays;
    if (days <= 0) return 0;
    const cutoff = (this.opts.now?.() ?? Date.now()) - days * DAY_MS;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    let deleted = 0;
    for (const name of names) {
      if (!name.endsWith(".wav")) continue;
      const file = path.join(this.dir, name);
      try {
        if ((await stat(file)).mtimeMs >= cutoff) continue;
        await unlink(file);
        deleted++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.opts.log?.warn({ err, file }, "could not delete an old recording");
      }
    }
    if (deleted) this.opts.log?.info({ deleted, retentionDays: days }, "old call recordings deleted");
    return deleted;
  }

  /** Sweep now and every few hours (the timer does not keep the process alive). */
  async startSweeping(): Promise<void> {
    await this.sweep();
    if (this.opts.retentionDays > 0 && !this.timer) this.timer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
