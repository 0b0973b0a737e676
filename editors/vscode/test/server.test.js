// Headless test of how the extension finds and starts the language server, with fakes for
// the `vscode` and `vscode-languageclient` modules (so it needs no VS Code and no npm install):
// the setting wins; else the Python extension's interpreter runs `python -m specc.cli lsp`
// when specc imports there; else `specc` on PATH; when none has specc, or the configured
// command cannot be spawned, an error message says how to install it and offers to open the
// setting, and nothing throws.
//
//   node test/server.test.js
"use strict";

const assert = require("assert");
const Module = require("module");
const path = require("path");

// ------------------------------------------------------------------ fakes
const state = {};
function reset() {
  Object.assign(state, {
    settings: {}, python: undefined, shown: [], choice: undefined, executed: [], clipboard: undefined,
    started: [], startError: undefined, traces: [],
  });
}

const fakeVscode = {
  workspace: {
    workspaceFolders: [{ uri: { fsPath: "/proj" } }],
    getConfiguration: () => ({ get: (key, fallback) => (key in state.settings ? state.settings[key] : fallback) }),
    onDidChangeConfiguration: () => ({ dispose() {} }),
  },
  extensions: { getExtension: (id) => (id === "ms-python.python" ? state.python : undefined) },
  window: {
    showErrorMessage: async (message, ...buttons) => {
      state.shown.push({ message, buttons });
      return state.choice;
    },
  },
  commands: {
    executeCommand: async (...args) => state.executed.push(args),
    registerCommand: () => ({ dispose() {} }),
  },
  env: { clipboard: { writeText: async (text) => { state.clipboard = text; } } },
};

class FakeClient {
  constructor(id, name, serverOptions) {
    this.id = id;
    this.serverOptions = serverOptions;
  }
  async start() {
    if (state.startError) {
      throw state.startError;
    }
    state.started.push(this.serverOptions);
  }
  async setTrace(trace) {
    state.traces.push(trace);
  }
  async stop() {}
}

const fakeClientModule = {
  LanguageClient: FakeClient,
  TransportKind: { stdio: 0 },
  Trace: { fromString: (value) => ({ off: 0, messages: 1, verbose: 2 })[value] },
};

const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === "vscode") return fakeVscode;
  if (request === "vscode-languageclient/node") return fakeClientModule;
  return load.call(this, request, ...rest);
};
const extension = require(path.join(__dirname, "..", "extension.js"));

// A Python extension exposing the `environments` API, with its interpreter at `executable`.
function pythonExtension(executable) {
  const environments = {
    getActiveEnvironmentPath: () => ({ id: executable, path: executable }),
    resolveEnvironment: async () => ({ executable: { uri: { fsPath: executable } } }),
  };
  return { isActive: false, activate: async () => ({ environments }), exports: undefined };
}

// A probe that succeeds for the programs in `working` (and records every call).
function prober(working) {
  const calls = [];
  const probe = async (command, args) => {
    calls.push([command, ...args]);
    return working.includes(command);
  };
  return { probe, calls };
}

// ------------------------------------------------------------------ tests
const tests = {
  async "the setting wins, with ${workspaceFolder} expanded and no probing"() {
    state.settings = { "server.command": "${workspaceFolder}/.venv/bin/specc", "trace.server": "verbose" };
    const { probe, calls } = prober([]);
    await extension.start({ probe });
    assert.deepStrictEqual(state.started, [{ command: "/proj/.venv/bin/specc", args: ["lsp"], transport: 0 }]);
    assert.deepStrictEqual(calls, []);
    assert.deepStrictEqual(state.traces, [2], "the trace setting reaches the client");
    assert.deepStrictEqual(state.shown, []);
  },

  async "the Python extension's interpreter runs python -m specc.cli lsp"() {
    state.python = pythonExtension("/venv/bin/python");
    const { probe, calls } = prober(["/venv/bin/python", "specc"]);
    await extension.start({ probe });
    assert.deepStrictEqual(state.started,
      [{ command: "/venv/bin/python", args: ["-m", "specc.cli", "lsp"], transport: 0 }]);
    assert.deepStrictEqual(calls, [["/venv/bin/python", "-c", "import specc.cli"]]);
  },

  async "the older getExecutionDetails API keeps its argv prefix"() {
    const settings = { getExecutionDetails: () => ({ execCommand: ["conda", "run", "-n", "ml", "python"] }) };
    state.python = { isActive: true, exports: { settings } };
    const { probe } = prober(["conda"]);
    await extension.start({ probe });
    assert.deepStrictEqual(state.started[0].command, "conda");
    assert.deepStrictEqual(state.started[0].args, ["run", "-n", "ml", "python", "-m", "specc.cli", "lsp"]);
  },

  async "without specc in the interpreter, specc on PATH"() {
    state.python = pythonExtension("/usr/bin/python3");
    const { probe } = prober(["specc"]);
    await extension.start({ probe });
    assert.deepStrictEqual(state.started, [{ command: "specc", args: ["lsp"], transport: 0 }]);
  },

  async "nowhere: an error says how to install into the interpreter, and opens the setting"() {
    state.python = pythonExtension("/venv/bin/python");
    state.choice = "Open Setting";
    const { probe } = prober([]);
    const result = await extension.start({ probe });
    assert.strictEqual(result, undefined);
    assert.deepStrictEqual(state.started, []);
    assert.strictEqual(state.shown.length, 1);
    const { message, buttons } = state.shown[0];
    assert.match(message, /"\/venv\/bin\/python" -m pip install specc/);
    assert.match(message, /specc\.server\.command/);
    assert.deepStrictEqual(buttons, ["Open Setting", "Copy Install Command"]);
    assert.deepStrictEqual(state.executed, [["workbench.action.openSettings", "specc.server.command"]]);
  },

  async "no Python extension and no specc on PATH: pip install specc, copied on request"() {
    state.choice = "Copy Install Command";
    const { probe } = prober([]);
    await extension.start({ probe });
    assert.match(state.shown[0].message, /not installed in PATH.*`pip install specc`/);
    assert.strictEqual(state.clipboard, "pip install specc");
  },

  async "a configured command that cannot be spawned is reported, not thrown"() {
    state.settings = { "server.command": "/nope/specc" };
    // what vscode-languageclient 9 rejects with when the command cannot be spawned
    state.startError = "Launching server using command /nope/specc failed. Error: spawn /nope/specc ENOENT";
    const result = await extension.start({ probe: prober([]).probe });
    assert.strictEqual(result, undefined);
    assert.match(state.shown[0].message, /`\/nope\/specc` was not found \(from the specc\.server\.command setting\)/);
    assert.deepStrictEqual(state.shown[0].buttons, ["Open Setting", "Copy Install Command"]);
  },

  async "a server that starts and fails is reported with the client's reason"() {
    state.settings = { "server.command": "/bin/false" };
    state.startError = new Error("Pending response rejected since connection got disposed");
    await extension.start({ probe: prober([]).probe });
    assert.match(state.shown[0].message, /cannot start: Pending response rejected .*\(from the specc\.server\.command/);
  },

  async "a Python extension that fails to activate falls back to PATH"() {
    state.python = { isActive: false, activate: async () => { throw new Error("broken"); } };
    const { probe } = prober(["specc"]);
    await extension.start({ probe });
    assert.deepStrictEqual(state.started[0].command, "specc");
  },
};

(async () => {
  let failed = 0;
  for (const [name, test] of Object.entries(tests)) {
    reset();
    try {
      await test();
      console.log(`ok   ${name}`);
    } catch (error) {
      failed += 1;
      console.log(`FAIL ${name}\n${error.stack}`);
    }
  }
  console.log(`${Object.keys(tests).length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
