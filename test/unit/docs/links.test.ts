/**
 * The documentation's own links: every relative link in README.md, SECURITY.md, docs/ and
 * bench/README.md names a file of the repository and, with a `#fragment`, a heading of it (as
 * GitHub makes anchors). A moved section or file breaks a link an operator follows first.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "../../support/keystone.ts";

/** The Markdown files checked. */
const FILES = [
  "README.md",
  "SECURITY.md",
  "bench/README.md",
  ...readdirSync(join(REPO, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, "")
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors of a Markdown file's headings (outside fenced code). */
function anchorsOf(file: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const m = fenced ? null : /^#{1,6} (.+)$/.exec(line);
    if (m?.[1]) out.add(anchorOf(m[1]));
  }
  return out;
}

/** Relative link targets of a Markdown file (outside fenced code), with their line numbers. */
function linksOf(file: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  let fenced = false;
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((text, i) => {
      if (text.startsWith("```")) fenced = !fenced;
      if (fenced) return;
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1] as string;
        if (!/^[a-z]+:/i.test(target)) out.push({ target, line: i + 1 });
      }
    });
  return out;
}

describe("documentation links", () => {
  it.each(FILES)("%s: every relative link names a file, and a heading of it", (name) => {
    const file = join(REPO, name);
    const broken: string[] = [];
    for (const { target, line } of linksOf(file)) {
      const [path, fragment] = target.split("#") as [string, string | undefined];
      const to = path === "" ? file : resolve(dirname(file), path);
      if (
        !existsSync(to) ||
        !relative(REPO, to)
          .split("/")
          .every((p) => p !== "..")
      ) {
        broken.push(`${name}:${line}: ${target} (no such file)`);
        continue;
      }
      if (fragment !== undefined && statSync(to).isFile() && to.endsWith(".md") && !anchorsOf(to).has(fragment)) {
        broken.push(`${name}:${line}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it("finds links and anchors at all (the check above cannot pass on nothing)", () => {
    expect(linksOf(join(REPO, "README.md")).length).toBeGreaterThan(10);
    expect(anchorsOf(join(REPO, "README.md")).has("exit-codes")).toBe(true);
    expect(anchorOf("Keystone credentials (never resource inputs)")).toBe("keystone-credentials-never-resource-inputs");
  });
});
