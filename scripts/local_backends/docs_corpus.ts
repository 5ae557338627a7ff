/**
 * The project's own documentation as passages for the vector search
 * stand-in: `README.md` and `docs/*.md`, split by section and then into
 * passages of a few hundred characters. Markdown is flattened into plain
 * lines (links and emphasis unwrapped, table rows as "cell: cell; cell", code
 * lines kept as they are, each on its own line). Every passage's text starts
 * with a label line, `README.md › Two commands`, that says where it comes
 * from, so the answer built from it can cite it.
 *
 * Requires `--allow-read` of the project root.
 *
 * @example
 * ```ts ignore
 * import { loadDocPassages } from "./docs_corpus.ts";
 *
 * const passages = await loadDocPassages(new URL("../../", import.meta.url));
 * console.log(passages[0]?.text.split("\n")[0]); // "README.md › homelab handlers"
 * ```
 *
 * @module
 */

/** One passage of the documentation. */
export interface DocPassage {
  /** A stable number, from 1 in reading order. */
  id: number;
  /** The file, relative to the project root (`README.md`, `docs/PERFORMANCE.md`). */
  source: string;
  /** The section heading it sits under. */
  title: string;
  /** The label line, then the passage's lines. */
  text: string;
}

/** The separator of the label line, between file and section. */
export const LABEL_SEPARATOR = " › ";

/** Aim for passages of about this many characters (a long line may exceed it). */
const PASSAGE_CHARS = 700;

/**
 * Reads and splits the project's documentation.
 *
 * @param root The project root (a `file:` URL ending with `/`).
 * @returns The passages, in reading order; a missing file is skipped.
 */
export async function loadDocPassages(root: URL): Promise<DocPassage[]> {
  const files = ["README.md"];
  try {
    const docs: string[] = [];
    for await (const entry of Deno.readDir(new URL("docs/", root))) {
      if (entry.isFile && entry.name.endsWith(".md")) docs.push(`docs/${entry.name}`);
    }
    files.push(...docs.sort());
  } catch {
    // No docs folder.
  }
  const passages: DocPassage[] = [];
  for (const source of files) {
    let markdown: string;
    try {
      markdown = await Deno.readTextFile(new URL(source, root));
    } catch {
      continue;
    }
    for (const { title, text } of splitMarkdown(markdown)) {
      passages.push({
        id: passages.length + 1,
        source,
        title,
        text: `${source}${LABEL_SEPARATOR}${title}\n${text}`,
      });
    }
  }
  return passages;
}

/**
 * Splits a Markdown document into sections and passages of plain lines.
 *
 * @param markdown The document.
 * @returns The passages with their section title (the document's title before the first section).
 */
export function splitMarkdown(markdown: string): { title: string; text: string }[] {
  const out: { title: string; text: string }[] = [];
  let title = "";
  let lines: string[] = [];
  let paragraph: string[] = [];
  let inCode = false;
  let tableRow = 0;

  const endParagraph = () => {
    if (paragraph.length > 0) lines.push(paragraph.join(" "));
    paragraph = [];
  };
  const endSection = () => {
    endParagraph();
    let passage: string[] = [];
    let size = 0;
    for (const line of lines) {
      if (size > 0 && size + line.length > PASSAGE_CHARS) {
        out.push({ title, text: passage.join("\n") });
        passage = [];
        size = 0;
      }
      passage.push(line);
      size += line.length + 1;
    }
    if (passage.length > 0) out.push({ title, text: passage.join("\n") });
    lines = [];
  };

  for (const raw of markdown.split("\n")) {
    const line = raw.trimEnd();
    if (/^\s*(```|~~~)/.test(line)) {
      endParagraph();
      inCode = !inCode;
      continue;
    }
    if (inCode) {
      if (line.trim()) lines.push(line.trim().replace(/\s+/g, " "));
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      endSection();
      title = plain(heading[2]!);
      continue;
    }
    if (/^\s*\|/.test(line)) {
      endParagraph();
      tableRow++;
      if (/^\s*\|[\s|:-]+\|\s*$/.test(line) || tableRow === 1) continue; // separator, header
      const cells = line.trim().replace(/^\||\|$/g, "").split("|").map((c) => plain(c))
        .filter(Boolean);
      if (cells.length > 0) {
        lines.push(cells.length === 1 ? cells[0]! : `${cells[0]}: ${cells.slice(1).join("; ")}`);
      }
      continue;
    }
    tableRow = 0;
    if (line.trim() === "") {
      endParagraph();
      continue;
    }
    if (/^\s*(?:[-*+]|\d+\.)\s+/.test(line)) {
      endParagraph();
      paragraph.push(plain(line.replace(/^\s*(?:[-*+]|\d+\.)\s+/, "")));
      continue;
    }
    paragraph.push(plain(line));
  }
  endSection();
  return out.filter((p) => p.text.trim() !== "");
}

/** Markdown inline syntax removed: links, images, emphasis, code ticks. */
function plain(text: string): string {
  return text
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\*\*([^*]+)\*\*/g, "$1")
    .replace(/(?<![\w*])\*([^*]+)\*(?![\w*])/g, "$1")
    .replace(/`([^`]*)`/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
}
