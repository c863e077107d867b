/**
 * Stack settings files as the operator commands read them beside Pulumi: `Pulumi.<stack>.yaml`
 * and the file `--config-file` names (the Automation API reads neither for us). One reader, so
 * that a file Pulumi would refuse is refused here first, naming the file, line and column,
 * before any stack is created or selected.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { load as loadYaml, type YAMLException } from "js-yaml";
import { ConfigError } from "../../lib/errors.ts";

/** Text with no YAML document in it: blank lines and comments only. */
const COMMENTS_ONLY = /^(?:\s*(?:#[^\n]*)?(?:\n|$))*$/;

/**
 * Where Pulumi keeps a stack's settings in a project folder (`Pulumi.<stack>.yaml`): the file
 * `pulumi config set` writes, and the one read when no `--config-file` is given.
 */
export function stackSettingsPath(dir: string, stack: string): string {
  return join(dir, `Pulumi.${stack}.yaml`);
}

/** A settings file's `config:` mapping: full keys (`keystone-totp:usersCsv`) to values as written. */
export type SettingsConfig = Readonly<Record<string, unknown>>;

/**
 * Parses the text of a settings file. Empty text (or a file of comments only) holds no
 * settings, as for Pulumi. Error messages name the place but never quote the file: it may hold
 * a password in the clear.
 *
 * @param file - where the text came from, for messages.
 * @returns the whole document (`config`, `encryptionsalt`, ...).
 * @throws {ConfigError} `E_CONFIG` when the text is not YAML, or not a mapping, or its `config`
 *   is not a mapping.
 */
export function parseSettingsDoc(text: string, file: string): Readonly<Record<string, unknown>> {
  let doc: unknown;
  try {
    // js-yaml refuses a source without a document; Pulumi reads it as no settings.
    doc = COMMENTS_ONLY.test(text) ? null : loadYaml(text);
  } catch (e) {
    // Only the reason and the place, and no `cause`: js-yaml's own message (and its mark's
    // buffer) quote the file, which may hold a password in the clear.
    const y = e as Partial<Pick<YAMLException, "reason" | "mark">>;
    const at = y.mark ? `:${y.mark.line + 1}:${y.mark.column + 1}` : "";
    throw new ConfigError(
      `${file}${at}: not valid YAML (${y.reason ?? "cannot be parsed"}): fix the stack settings file`,
    );
  }
  // A file with only comments parses to null or undefined: no settings.
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${file}: a stack settings file must be a mapping (config: ...), not a ${typeName(doc)}`);
  }
  const config = (doc as Record<string, unknown>).config;
  if (config !== undefined && config !== null && (typeof config !== "object" || Array.isArray(config))) {
    throw new ConfigError(`${file}: 'config' must be a mapping of settings (key: value), not a ${typeName(config)}`);
  }
  return doc as Record<string, unknown>;
}

/**
 * The `config:` mapping of a settings file's text.
 *
 * @throws {ConfigError} as {@link parseSettingsDoc}.
 */
export function parseSettings(text: string, file: string): SettingsConfig {
  const config = parseSettingsDoc(text, file).config;
  return (config ?? {}) as SettingsConfig;
}

/**
 * Reads the `config:` mapping of a settings file.
 *
 * @throws {ConfigError} `E_CONFIG` when the file cannot be read (naming it and why) or as
 *   {@link parseSettingsDoc}.
 */
export function readSettingsFile(file: string): SettingsConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? "unreadable");
    throw new ConfigError(`${file}: cannot read the stack settings file (${why}): check --config-file`, { cause: e });
  }
  return parseSettings(text, file);
}

/** A setting's value as Pulumi would give it to a program: scalars as strings, anything else undefined. */
export function scalarSetting(config: SettingsConfig, key: string): string | undefined {
  const v = config[key];
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : undefined;
}

function typeName(v: unknown): string {
  return Array.isArray(v) ? "list" : typeof v === "object" ? "mapping" : typeof v;
}
