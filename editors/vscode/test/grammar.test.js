// Headless test of the TextMate grammar: tokenizes every spec with vscode-textmate and
// vscode-oniguruma (the engine VS Code uses) and checks the scopes of key tokens:
// keywords, op and block calls, numbers, comments, strings, true/false and dtypes.
//
//   node test/grammar.test.js [SPECS_DIR] [EXPECTATIONS.json]
//
// SPECS_DIR defaults to the repository's specs/. The expected tokens come from
// EXPECTATIONS.json when given (tests/test_vscode_grammar.py writes it with specc's own
// lexer: a list of {file, line, col, text, scope}, lines and columns 0-based in UTF-16
// units, scope a prefix the token's scopes must include); otherwise from the small
// tokenizer below, which mirrors the terminals of grammar/nnspec.lark.
"use strict";

const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const GRAMMAR = path.join(__dirname, "..", "syntaxes", "nnspec.tmLanguage.json");
const KEYWORDS = new Set(["import", "model", "block", "compress", "input", "output", "return", "columns",
  "repeat", "if", "else", "on", "except", "where"]);
const DTYPES = new Set(["f32", "f64", "f16", "bf16", "i64", "i32", "bool"]);

async function loadGrammar() {
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === "source.nnspec" ? vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, "utf8"), GRAMMAR) : null,
  });
  return registry.loadGrammar("source.nnspec");
}

// Expected scopes from a plain tokenizer (used when no expectations file is given). `..` (a range, `2..12`)
// and `...` are skipped whole: the `.4` of `1..4` is no number.
function expectations(file, text) {
  const out = [];
  const token = /\.\.\.?|(\/\/[^\n]*)|("[^"\n]*")|([0-9]+:[0-9]+)|((?:[0-9]+\.(?!\.)[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?)|([A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9_]+)|(\n)|[\s\S]/gy;
  let line = 0, lineStart = 0, m;
  while ((m = token.exec(text)) !== null) {
    const col = m.index - lineStart;
    const add = (scope) => out.push({ file, line, col, text: m[0], scope });
    if (m[1]) add("comment.line");
    else if (m[2]) add("string.quoted");
    else if (m[3] || m[4]) add("constant.numeric");
    else if (m[5]) {
      const rest = text.slice(token.lastIndex);
      if (KEYWORDS.has(m[5])) add("keyword.");
      else if (m[5] === "true" || m[5] === "false") add("constant.language");
      else if (/^[ \t]*\(/.test(rest)) add("entity.name.function");
      else if (DTYPES.has(m[5]) && /^[ \t]*\[/.test(rest)) add("support.type");
    } else if (m[6]) {
      line += 1;
      lineStart = token.lastIndex;
    }
  }
  return out;
}

async function main() {
  const specsDir = path.resolve(process.argv[2] || path.join(__dirname, "..", "..", "..", "specs"));
  const files = fs.readdirSync(specsDir).filter((f) => f.endsWith(".nnspec")).sort();
  if (files.length === 0) throw new Error(`no specs in ${specsDir}`);
  const given = process.argv[3] ? JSON.parse(fs.readFileSync(process.argv[3], "utf8")) : null;
  const grammar = await loadGrammar();
  const failures = [];
  let checked = 0;
  for (const file of files) {
    const text = fs.readFileSync(path.join(specsDir, file), "utf8");
    const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
    const tokens = [];
    let stack = vsctm.INITIAL;
    for (const line of lines) {
      const result = grammar.tokenizeLine(line, stack);
      tokens.push(result.tokens);
      stack = result.ruleStack;
    }
    const wanted = given ? given.filter((e) => e.file === file) : expectations(file, text);
    for (const e of wanted) {
      const overlapping = tokens[e.line].filter((t) => t.startIndex < e.col + e.text.length && t.endIndex > e.col);
      const ok = overlapping.length > 0 && overlapping.every((t) => t.scopes.some((s) => s.startsWith(e.scope)));
      checked += 1;
      if (!ok) {
        const got = overlapping.map((t) => t.scopes.join(" ")).join(" | ");
        failures.push(`${file}:${e.line + 1}:${e.col + 1}: \`${e.text}\` should be ${e.scope}*, got ${got || "nothing"}`);
      }
    }
  }
  if (failures.length) {
    console.error(failures.join("\n"));
    console.error(`${failures.length} of ${checked} tokens have the wrong scope`);
    process.exit(1);
  }
  console.log(`ok: ${checked} tokens in ${files.length} specs have their scopes`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
