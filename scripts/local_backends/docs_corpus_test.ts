import assert from "node:assert/strict";
import { loadDocPassages, splitMarkdown } from "./docs_corpus.ts";

Deno.test("splitMarkdown() flattens sections, tables, lists and code into plain lines", () => {
  const markdown = [
    "# Title",
    "",
    "Intro with a [link](http://x) and **bold**",
    "on two lines.",
    "",
    "## Tasks",
    "",
    "| Task | What |",
    "| ---- | ---- |",
    "| `deno task ci` | Every check |",
    "",
    "- first item",
    "- second `item`",
    "",
    "```sh",
    "deno task stack   # runs it",
    "```",
  ].join("\n");
  assert.deepEqual(splitMarkdown(markdown), [
    { title: "Title", text: "Intro with a link and bold on two lines." },
    {
      title: "Tasks",
      text: "deno task ci: Every check\nfirst item\nsecond item\ndeno task stack # runs it",
    },
  ]);
});

Deno.test("splitMarkdown() cuts long sections into passages of a few hundred characters", () => {
  const paragraph = "A sentence of some length that repeats. ".repeat(5).trim();
  const passages = splitMarkdown(`## Long\n\n${Array(10).fill(paragraph).join("\n\n")}`);
  assert.ok(passages.length >= 3, `${passages.length} passages`);
  assert.ok(passages.every((p) => p.title === "Long" && p.text.length <= 800));
});

Deno.test("loadDocPassages() reads README.md and docs/*.md with label lines", async () => {
  const passages = await loadDocPassages(new URL("../../", import.meta.url));
  assert.ok(passages.length > 5);
  assert.deepEqual(passages.map((p) => p.id), passages.map((_, i) => i + 1));
  assert.equal(passages[0]!.source, "README.md");
  for (const p of passages) {
    assert.equal(p.text.split("\n")[0], `${p.source} › ${p.title}`);
    assert.ok(!/\n\s*\n/.test(p.text), "no blank lines inside a passage");
  }
  assert.ok(passages.some((p) => p.source.startsWith("docs/")));
  assert.deepEqual(await loadDocPassages(new URL("file:///nonexistent/")), []);
});
