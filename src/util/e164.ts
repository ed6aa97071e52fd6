/** A phone number in E.164: "+", a country code not starting with 0, up to 15 digits in all. */
export const E164 = /^\+[1-9][0-9]{6,14}$/;
/** The same, as a JSON Schema `pattern` (control API, the agent's tool declarations). */
export const E164_PATTERN = E164.source;
