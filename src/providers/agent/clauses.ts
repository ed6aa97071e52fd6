/**
 * Splits a stream of text deltas into speakable pieces at clause and sentence ends, so synthesis starts on the first
 * clause instead of the whole reply. Very short pieces are held back (a lone "Hi," sounds clipped on its own).
 */
export class ClauseChunker {
  private buf = "";

  constructor(private readonly minChars = 12) {}

  push(delta: string): string[] {
    this.buf += delta;
    const out: string[] = [];
    let start = 0;
    const re = /[.!?;:,](?=\s)|\n/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(this.buf))) {
      const end = m.index + m[0].length;
      const piece = this.buf.slice(start, end);
      if (piece.trim().length >= this.minChars || /[.!?\n]/.test(m[0])) {
        if (piece.trim()) out.push(piece.trim());
        start = end;
      }
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  flush(): string[] {
    const rest = this.buf.trim();
    this.buf = "";
    return rest ? [rest] : [];
  }
}
