/**
 * Shape checks for JSON bodies, shared by the clients (internal).
 *
 * @module
 */

/** Whether the value is a non-null, non-array object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether the value is an array of finite numbers. */
export function isNumberArray(value: unknown): value is number[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (typeof item !== "number" || !Number.isFinite(item)) return false;
  return true;
}
