// The nnspec extension: TextMate highlighting (declared in package.json) and an LSP
// client that starts `specc lsp` (the server does diagnostics, hover, completion,
// go to definition, references, rename, symbols, inlay hints, code lenses, semantic
// tokens and formatting).
// Plain JavaScript: no build step.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

// `${workspaceFolder}` in the settings: the first folder of the workspace.
function expand(value) {
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  return folder ? value.split("${workspaceFolder}").join(folder.uri.fsPath) : value;
}

function createClient() {
  const config = vscode.workspace.getConfiguration("specc");
  const serverOptions = {
    command: expand(config.get("server.command", "specc")),
    args: config.get("server.args", ["lsp"]),
    transport: TransportKind.stdio,
  };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "nnspec" },
      { scheme: "untitled", language: "nnspec" },
    ],
  };
  return new LanguageClient("specc", "specc language server", serverOptions, clientOptions);
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

async function activate(context) {
  context.subscriptions.push(vscode.commands.registerCommand("specc.showReferences", showReferences));
  client = createClient();
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("specc.server")) {
        await client.stop();
        client = createClient();
        await client.start();
      }
    })
  );
  await client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
