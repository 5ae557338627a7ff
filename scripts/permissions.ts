/**
 * Writes the `env` list of each service's permission set in the root
 * `deno.json` from its definition (`configVarNames(definition.spec)`), so the
 * variables are declared once, in code. `--check` only reports a difference
 * and exits 1 (CI's test of the same lives in `services/table_test.ts`).
 *
 * Run: `deno task permissions` (or `deno task permissions --check`).
 *
 * @module
 */
import { configVarNames } from "@homelab/handler-base/config";
import { SERVICES } from "../services/table.ts";

const path = new URL("../deno.json", import.meta.url);
const denoJson = JSON.parse(await Deno.readTextFile(path));
const check = Deno.args.includes("--check");
let stale = 0;
for (const service of SERVICES) {
  const env = configVarNames((await service.load()).spec);
  const set = denoJson.permissions[service.name] ??= {};
  if (JSON.stringify(set.env) === JSON.stringify(env)) continue;
  stale++;
  console.error(`${service.name}: env list ${check ? "differs" : "rewritten"}`);
  set.env = env;
}
if (check) Deno.exit(stale ? 1 : 0);
if (stale) await Deno.writeTextFile(path, JSON.stringify(denoJson, null, 2) + "\n");
