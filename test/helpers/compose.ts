import { spawnSync } from "node:child_process";

/**
 * Compose's variable substitution for the forms the compose files use: `${VAR}`, `${VAR:-default}` (default when unset
 * or empty) and `${VAR:?message}` (an error when unset or empty).
 */
export function interpolate(value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}/g, (_, name: string, op: string | undefined, arg: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== "") return v;
    if (op === ":?") throw new Error(`${name}: ${arg}`);
    return op === ":-" ? (arg ?? "") : "";
  });
}

/** `docker compose` (v2 plugin) or `docker-compose` (v1), whichever runs here. */
export function composeCommand(): string[] | undefined {
  for (const cmd of [["docker", "compose"], ["docker-compose"]]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), "version"], { encoding: "utf8" });
    if (r.status === 0) return cmd;
  }
  return undefined;
}
