// Starts `pnnc lsp` for .pnn files; everything else is the language server's.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate() {
  const command = vscode.workspace.getConfiguration("pnnc").get("path") || "pnnc";
  const serverOptions = { command, args: ["lsp"], transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "pnn" },
      { scheme: "untitled", language: "pnn" },
    ],
  };
  client = new LanguageClient("pnnc", "pnnc language server", serverOptions, clientOptions);
  return client.start().catch((e) => {
    vscode.window.showErrorMessage(
      `pnnc: cannot start \`${command} lsp\` (${e.message}). Set "pnnc.path" to the pnnc executable.`
    );
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
