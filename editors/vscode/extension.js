// The nnspec extension: TextMate highlighting (declared in package.json) and an LSP
// client that starts the specc language server (the server does diagnostics, hover,
// completion, go to definition, references, rename, symbols, inlay hints, code lenses,
// quick fixes, semantic tokens and formatting).
// Plain JavaScript: no build step.
//
// Which server: the `specc.server.command` setting when it is set; else the Python
// extension's selected interpreter running `python -m specc.cli lsp` (specc is usually
// installed in the project's virtual environment, which is not on VS Code's PATH); else
// `specc` on PATH. When none of them has specc, the user is told how to install it
// instead of the client failing with a bare ENOENT.
"use strict";

const childProcess = require("child_process");
const vscode = require("vscode");
const { LanguageClient, TransportKind, Trace } = require("vscode-languageclient/node");

const INSTALL_HINT = "pip install specc";
const PROBE_TIMEOUT_MS = 15000;

let client;

// `${workspaceFolder}` in the settings: the first folder of the workspace.
function expand(value) {
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  return folder ? value.split("${workspaceFolder}").join(folder.uri.fsPath) : value;
}

// Runs `command args` and resolves to true when it exits 0 (false when it cannot be
// spawned, fails or times out): whether that program can start the server.
function probe(command, args) {
  return new Promise((resolve) => {
    try {
      childProcess.execFile(command, args, { timeout: PROBE_TIMEOUT_MS, windowsHide: true }, (error) => resolve(!error));
    } catch (error) {
      resolve(false);
    }
  });
}

// The interpreter the Python extension has selected for `resource`, as the argv prefix that
// runs it (conda environments may need `conda run ...`), or undefined when there is no Python
// extension or no interpreter selected. Its API changed over the years: the newer
// `environments` API first, then the older `settings.getExecutionDetails`.
async function pythonCommand(resource) {
  const extension = vscode.extensions.getExtension("ms-python.python");
  if (!extension) {
    return undefined;
  }
  try {
    const api = extension.isActive ? extension.exports : await extension.activate();
    if (api && api.environments && api.environments.getActiveEnvironmentPath) {
      const active = api.environments.getActiveEnvironmentPath(resource);
      const resolved = active && api.environments.resolveEnvironment
        ? await api.environments.resolveEnvironment(active) : undefined;
      const executable = resolved && resolved.executable && resolved.executable.uri
        ? resolved.executable.uri.fsPath : active && active.path;
      if (executable) {
        return [executable];
      }
    }
    if (api && api.settings && api.settings.getExecutionDetails) {
      const details = api.settings.getExecutionDetails(resource);
      if (details && Array.isArray(details.execCommand) && details.execCommand.length) {
        return details.execCommand.slice();
      }
    }
  } catch (error) {
    // a Python extension that fails to activate is as good as none: fall back to PATH
  }
  return undefined;
}

// Where to run the server from: {command, args, source, python?}; or {missing: {python}} when
// specc was found nowhere (python: the interpreter it should be installed into, if any).
// `deps` replaces the Python extension and the probe in tests.
async function findServer(deps) {
  const config = vscode.workspace.getConfiguration("specc");
  const serverArgs = config.get("server.args", ["lsp"]);
  const configured = (config.get("server.command", "") || "").trim();
  if (configured) {
    return { command: expand(configured), args: serverArgs, source: "setting" };
  }
  const resource = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0]
    ? vscode.workspace.workspaceFolders[0].uri : undefined;
  const python = await (deps.pythonCommand || pythonCommand)(resource);
  const check = deps.probe || probe;
  if (python) {
    const [command, ...prefix] = python;
    if (await check(command, [...prefix, "-c", "import specc.cli"])) {
      return { command, args: [...prefix, "-m", "specc.cli", ...serverArgs], source: "python", python: command };
    }
  }
  if (await check("specc", ["--help"])) {
    return { command: "specc", args: serverArgs, source: "path" };
  }
  return { missing: { python: python && python[0] } };
}

// Tells the user that the server cannot start and how to fix it, with a button that opens
// the setting (and one that copies the install command, when an interpreter is known).
async function reportMissing(detail, python) {
  const install = python ? `"${python}" -m ${INSTALL_HINT}` : INSTALL_HINT;
  const where = python ? `the selected Python interpreter (${python}) and PATH` : "PATH";
  const message = `specc: the language server cannot start: ${detail || `specc is not installed in ${where}`}. `
    + `Install it with \`${install}\`, or set "specc.server.command" to the specc executable.`;
  const openSetting = "Open Setting";
  const copy = "Copy Install Command";
  const choice = await vscode.window.showErrorMessage(message, openSetting, copy);
  if (choice === openSetting) {
    await vscode.commands.executeCommand("workbench.action.openSettings", "specc.server.command");
  } else if (choice === copy) {
    await vscode.env.clipboard.writeText(install);
  }
  return message;
}

function createClient(server) {
  const serverOptions = { command: server.command, args: server.args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "nnspec" },
      { scheme: "untitled", language: "nnspec" },
    ],
  };
  // The id "specc" makes the client read the `specc.trace.server` setting on start.
  return new LanguageClient("specc", "specc language server", serverOptions, clientOptions);
}

function traceSetting() {
  return Trace.fromString(vscode.workspace.getConfiguration("specc").get("trace.server", "off"));
}

// Starts the server wherever it is found; reports instead of throwing when it cannot be started.
async function start(deps = {}) {
  const server = await findServer(deps);
  if (server.missing) {
    await reportMissing(undefined, server.missing.python);
    return undefined;
  }
  const started = (deps.createClient || createClient)(server);
  try {
    await started.start();
  } catch (error) {
    // vscode-languageclient rejects with a string ("Launching server using command X failed. Error: spawn X ENOENT")
    const text = `${error && error.message || error}`;
    const reason = (error && error.code === "ENOENT") || /\bENOENT\b/.test(text) ? `\`${server.command}\` was not found` : text;
    await reportMissing(`${reason} (from ${server.source === "setting" ? "the specc.server.command setting" : server.source})`,
      server.python);
    return undefined;
  }
  try {
    await started.setTrace(traceSetting());
  } catch (error) {
    // an old client without setTrace reads the setting itself
  }
  return started;
}

// The server's reference-count code lens runs `specc.showReferences` with (uri, position, locations)
// as LSP JSON; VS Code's own command wants its types.
function showReferences(uri, position, locations) {
  const toPosition = (p) => new vscode.Position(p.line, p.character);
  const toLocation = (l) =>
    new vscode.Location(vscode.Uri.parse(l.uri), new vscode.Range(toPosition(l.range.start), toPosition(l.range.end)));
  return vscode.commands.executeCommand(
    "editor.action.showReferences", vscode.Uri.parse(uri), toPosition(position), locations.map(toLocation));
}

async function restart() {
  if (client) {
    const old = client;
    client = undefined;
    try {
      await old.stop();
    } catch (error) {
      // a server that never started has nothing to stop
    }
  }
  client = await start();
}

async function activate(context) {
  context.subscriptions.push(vscode.commands.registerCommand("specc.showReferences", showReferences));
  context.subscriptions.push(vscode.commands.registerCommand("specc.restartServer", restart));
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("specc.server")) {
        await restart();
      } else if (event.affectsConfiguration("specc.trace.server") && client) {
        await client.setTrace(traceSetting());
      }
    })
  );
  client = await start();
  // Registered after start(): finding the interpreter activated the Python extension.
  const python = vscode.extensions.getExtension("ms-python.python");
  if (python && python.isActive && python.exports && python.exports.environments
      && python.exports.environments.onDidChangeActiveEnvironmentPath) {
    // a newly selected interpreter may be the one that has specc
    context.subscriptions.push(python.exports.environments.onDidChangeActiveEnvironmentPath(() => {
      if (!(vscode.workspace.getConfiguration("specc").get("server.command", "") || "").trim()) {
        return restart();
      }
      return undefined;
    }));
  }
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate, findServer, start, reportMissing };
