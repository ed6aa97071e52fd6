/**
 * The embedded recognisers ship one acoustic model, US English (Debian's pocketsphinx-en-us; SoundSwallower's
 * en-us): a call in another language must use a cloud recogniser, and is told so when its session is set rather than
 * hearing nothing but misrecognitions.
 */
export function englishOnly(provider: string, language: string): string | undefined {
  if (/^en(-|$)/i.test(language)) return undefined;
  return `${provider} recognises English only (its model is en-US), not "${language}": set DEEPGRAM_API_KEY to listen in other languages`;
}
