/**
 * A target with a bug only coverage guidance finds in a few thousand runs: it throws on inputs starting with "FUZZ!",
 * and each correct byte opens a new block (random inputs would need ~2^40 tries). test/fuzz.test.ts checks that the
 * engine finds it, i.e. that the coverage feedback works.
 */
export function planted(b: Buffer): void {
  if (b[0] === 0x46)
    if (b[1] === 0x55)
      if (b[2] === 0x5a)
        if (b[3] === 0x5a)
          if (b[4] === 0x21) throw new Error("planted bug reached");
}
