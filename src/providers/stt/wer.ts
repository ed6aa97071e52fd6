/** Word error rate, for measuring recognisers against reference transcripts. */

/** Lowercase words without punctuation; apostrophes inside words are kept ("what's" stays one word). */
export function normalizeWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[^a-z0-9'\s]/g, " ")
    .split(/\s+/)
    .map((w) => w.replace(/^'+|'+$/g, ""))
    .filter(Boolean);
}

export interface WerResult {
  /** (substitutions + deletions + insertions) / reference words; can exceed 1 when the hypothesis adds words. */
  wer: number;
  errors: number;
  referenceWords: number;
}

/** Word-level Levenshtein distance between reference and hypothesis, over normalised words. */
export function wer(reference: string, hypothesis: string): WerResult {
  const ref = normalizeWords(reference);
  const hyp = normalizeWords(hypothesis);
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const cur = [i];
    for (let j = 1; j <= hyp.length; j++) {
      const substitution = prev[j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1);
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, substitution);
    }
    prev = cur;
  }
  const errors = prev[hyp.length]!;
  // An empty reference: any hypothesis word is an error; nothing said and nothing heard is perfect.
  const rate = ref.length === 0 ? (errors === 0 ? 0 : 1) : errors / ref.length;
  return { wer: rate, errors, referenceWords: ref.length };
}
