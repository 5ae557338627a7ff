/**
 * Writing the client's output files, with failures as local errors (exit
 * code 5).
 *
 * @example
 * ```ts ignore
 * import { writeOutput } from "./files.ts";
 *
 * await writeOutput("out.wav", wav);
 * ```
 *
 * @module
 */
import { CliError, EXIT_CODES } from "./exit_codes.ts";

/**
 * Writes a file.
 *
 * @param path Where.
 * @param bytes What.
 * @throws {CliError} With exit code 5 when it cannot be written.
 *
 * @example
 * ```ts ignore
 * await writeOutput("speech.wav", audio);
 * ```
 */
export async function writeOutput(path: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes);
  } catch (error) {
    throw new CliError(
      EXIT_CODES.localError,
      `Cannot write ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
