import { describe, expect, it } from "vitest";
import { normalizeWords, wer } from "../src/providers/stt/wer.ts";

describe("wer", () => {
  it("is zero for the same words, ignoring case and punctuation", () => {
    expect(wer("What's the weather like?", "what's the WEATHER, like")).toEqual({ wer: 0, errors: 0, referenceWords: 4 });
  });

  it("counts substitutions, deletions and insertions", () => {
    expect(wer("a b c d", "a x c d").errors).toBe(1); // substitution
    expect(wer("a b c d", "a c d").errors).toBe(1); // deletion
    expect(wer("a b c d", "a b b c d").errors).toBe(1); // insertion
    expect(wer("a b c d", "b c d e").errors).toBe(2); // deletion + insertion, not 4 substitutions
    expect(wer("a b c d", "a x c d").wer).toBe(0.25);
  });

  it("can exceed 1 when the hypothesis adds words", () => {
    expect(wer("hello", "oh hello there you")).toMatchObject({ errors: 3, wer: 3 });
  });

  it("handles empty texts", () => {
    expect(wer("", "").wer).toBe(0);
    expect(wer("", "noise").wer).toBe(1);
    expect(wer("two words", "")).toMatchObject({ errors: 2, wer: 1 });
  });

  it("keeps apostrophes inside words only", () => {
    expect(normalizeWords("The neighbor's house, 'quoted' — don’t!")).toEqual(["the", "neighbor's", "house", "quoted", "don't"]);
    expect(wer("what's", "what is").errors).toBe(2);
  });
});
