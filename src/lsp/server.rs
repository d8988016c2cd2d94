//! The server loop: open documents, protocol messages <-> [`Analysis`] calls.
//!
//! Every change re-checks the whole document (a few milliseconds even for
//! the largest std-model, see docs/performance.md) and the open documents
//! that import it, then publishes diagnostics. Diagnostics located in an
//! imported file are published for that file too, merged with its own.

use super::analysis::{Analysis, FileDiagnostic, FileRange};
use super::uri;
use crate::check::{self, Files, LoadError, SourceFile};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    Request as _,
};
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionParams,
    CodeActionProviderCapability, CompletionOptions, CompletionParams, CompletionResponse,
    DiagnosticRelatedInformation, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DocumentFormattingParams, DocumentSymbolParams,
    DocumentSymbolResponse, GotoDefinitionParams, GotoDefinitionResponse, HoverParams,
    HoverProviderCapability, Location, OneOf, PublishDiagnosticsParams, ServerCapabilities,
    TextDocumentContentChangeEvent, TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit,
    Uri, WorkspaceEdit,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What the server offers (sent in the `initialize` response).
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["(".into(), ",".into(), "{".into()]),
            ..Default::default()
        }),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..Default::default()
    }
}

/// Serve over stdin/stdout until the client says `exit`.
pub fn run_stdio() -> Result<(), String> {
    let (connection, io_threads) = Connection::stdio();
    serve(&connection)?;
    drop(connection);
    io_threads.join().map_err(|e| format!("stdio: {e}"))
}

/// Initialise, then handle messages until `shutdown` and `exit`. As the
/// protocol asks, `exit` without a `shutdown` first is an error (exit code
/// 1); a client that closes the connection after `shutdown` is not.
pub fn serve(connection: &Connection) -> Result<(), String> {
    let caps = serde_json::to_value(capabilities()).map_err(|e| e.to_string())?;
    connection
        .initialize(caps)
        .map_err(|e| format!("initialize: {e}"))?;
    let mut server = Server::default();
    let mut shut_down = false;
    for message in &connection.receiver {
        match message {
            Message::Request(req) if req.method == "shutdown" => {
                shut_down = true;
                send(connection, Response::new_ok(req.id, ()).into())?;
            }
            Message::Request(req) if shut_down => {
                let refused = Response::new_err(
                    req.id,
                    ErrorCode::InvalidRequest as i32,
                    "the server is shutting down".into(),
                );
                send(connection, refused.into())?;
            }
            Message::Request(req) => {
                let response = server.request(req);
                send(connection, response.into())?;
            }
            Message::Notification(n) if n.method == "exit" => {
                return if shut_down {
                    Ok(())
                } else {
                    Err("`exit` before `shutdown`".into())
                };
            }
            Message::Notification(n) => {
                for out in server.notification(n) {
                    send(connection, out.into())?;
                }
            }
            Message::Response(_) => {}
        }
    }
    if shut_down {
        Ok(())
    } else {
        Err("the client closed the connection without `shutdown`".into())
    }
}

fn send(connection: &Connection, message: Message) -> Result<(), String> {
    connection
        .sender
        .send(message)
        .map_err(|_| "the client closed the connection".to_string())
}

/// An open document.
struct Document {
    uri: Uri,
    version: i32,
    text: String,
    analysis: Analysis,
}

#[derive(Default)]
pub struct Server {
    /// Open documents by URI.
    docs: HashMap<String, Document>,
    /// Diagnostics located in a file, by that file's path, then by the
    /// URI of the open document whose check found them.
    from_importers: HashMap<String, HashMap<String, Vec<FileDiagnostic>>>,
}

/// Open documents over the disk, for imports.
struct OpenFiles<'a> {
    docs: &'a HashMap<String, Document>,
}

impl Files for OpenFiles<'_> {
    fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf> {
        std::fs::canonicalize(path).or_else(|e| match self.open_text(path) {
            Some(_) => Ok(path.to_path_buf()),
            None => Err(e),
        })
    }

    fn read(&self, path: &Path) -> Result<String, LoadError> {
        match self.open_text(path) {
            Some(text) => Ok(text.to_string()),
            None => check::Disk.read(path),
        }
    }
}

impl OpenFiles<'_> {
    fn open_text(&self, path: &Path) -> Option<&str> {
        let canonical = std::fs::canonicalize(path).ok();
        self.docs
            .values()
            .find(|d| {
                let p = Path::new(&d.analysis.path);
                p == path || canonical.is_some() && std::fs::canonicalize(p).ok() == canonical
            })
            .map(|d| d.text.as_str())
    }
}

/// The file path of a document URI (the URI itself for unsaved buffers).
fn path_of(uri: &Uri) -> String {
    uri::to_path(uri.as_str()).map_or_else(|| uri.as_str().to_string(), |p| p.display().to_string())
}

fn uri_of(path: &str) -> Option<Uri> {
    Uri::from_str(&uri::from_path(Path::new(path))).ok()
}

impl Server {
    /// Answer one request (never fails: errors are error responses).
    pub fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => self.with_params(req, |s, p: HoverParams| {
                let at = p.text_document_position_params;
                s.doc(&at.text_document.uri)
                    .and_then(|d| d.analysis.hover(at.position))
            }),
            GotoDefinition::METHOD => self.with_params(req, |s, p: GotoDefinitionParams| {
                let at = p.text_document_position_params;
                s.doc(&at.text_document.uri)
                    .and_then(|d| d.analysis.goto_definition(at.position))
                    .and_then(|r| location(&r))
                    .map(GotoDefinitionResponse::Scalar)
            }),
            DocumentSymbolRequest::METHOD => self.with_params(req, |s, p: DocumentSymbolParams| {
                s.doc(&p.text_document.uri)
                    .map(|d| DocumentSymbolResponse::Nested(d.analysis.symbols()))
            }),
            Formatting::METHOD => self.with_params(req, |s, p: DocumentFormattingParams| {
                s.doc(&p.text_document.uri)
                    .and_then(|d| d.analysis.format())
            }),
            Completion::METHOD => self.with_params(req, |s, p: CompletionParams| {
                let at = p.text_document_position;
                s.doc(&at.text_document.uri)
                    .map(|d| CompletionResponse::Array(d.analysis.completions(at.position)))
            }),
            CodeActionRequest::METHOD => {
                self.with_params(req, |s, p: CodeActionParams| s.code_actions(&p))
            }
            _ => Err((
                ErrorCode::MethodNotFound,
                format!("pnnc lsp does not handle `{}`", req.method),
            )),
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code as i32, message),
        }
    }

    fn with_params<P: serde::de::DeserializeOwned, R: serde::Serialize>(
        &mut self,
        req: Request,
        f: impl FnOnce(&mut Server, P) -> R,
    ) -> Result<serde_json::Value, (ErrorCode, String)> {
        let params: P = serde_json::from_value(req.params)
            .map_err(|e| (ErrorCode::InvalidParams, format!("{}: {e}", req.method)))?;
        serde_json::to_value(f(self, params)).map_err(|e| (ErrorCode::InternalError, e.to_string()))
    }

    fn doc(&self, uri: &Uri) -> Option<&Document> {
        self.docs.get(uri.as_str())
    }

    // `WorkspaceEdit` keys its map by `Uri`, which hashes by its text only.
    #[allow(clippy::mutable_key_type)]
    fn code_actions(&self, p: &CodeActionParams) -> Option<Vec<CodeActionOrCommand>> {
        let doc = self.doc(&p.text_document.uri)?;
        let files = OpenFiles { docs: &self.docs };
        let actions = doc.analysis.code_actions(p.range, &files);
        Some(
            actions
                .into_iter()
                .map(|a| {
                    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
                    for e in a.edits {
                        if let Some(u) = uri_of(&e.path) {
                            changes.entry(u).or_default().push(e.edit);
                        }
                    }
                    CodeActionOrCommand::CodeAction(CodeAction {
                        title: a.title,
                        kind: Some(CodeActionKind::QUICKFIX),
                        diagnostics: a.diagnostic.map(|d| vec![d]),
                        edit: Some(WorkspaceEdit {
                            changes: Some(changes),
                            ..Default::default()
                        }),
                        is_preferred: Some(a.preferred),
                        ..Default::default()
                    })
                })
                .collect(),
        )
    }

    /// Handle one notification; the diagnostics to publish.
    pub fn notification(&mut self, n: Notification) -> Vec<Notification> {
        let changed = match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) else {
                    return Vec::new();
                };
                let doc = p.text_document;
                self.set(doc.uri, doc.version, doc.text)
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) else {
                    return Vec::new();
                };
                let Some(doc) = self.docs.get(p.text_document.uri.as_str()) else {
                    return Vec::new();
                };
                let text = apply_changes(&doc.text, &p.content_changes);
                self.set(p.text_document.uri, p.text_document.version, text)
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params) else {
                    return Vec::new();
                };
                return self.close(&p.text_document.uri);
            }
            _ => return Vec::new(),
        };
        self.recheck_and_publish(changed)
    }

    /// Store a document's new text; the paths whose documents changed.
    fn set(&mut self, uri: Uri, version: i32, text: String) -> Vec<String> {
        let path = path_of(&uri);
        let analysis = Analysis::new(&path, &text, &OpenFiles { docs: &self.docs });
        self.docs.insert(
            uri.as_str().to_string(),
            Document {
                uri,
                version,
                text,
                analysis,
            },
        );
        vec![path]
    }

    /// Forget a document. Its own diagnostics go; those its importers found
    /// in it stay, and so does nothing it found in its imports.
    fn close(&mut self, uri: &Uri) -> Vec<Notification> {
        let Some(doc) = self.docs.remove(uri.as_str()) else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        for (path, by) in &mut self.from_importers {
            if by.remove(uri.as_str()).is_some() {
                touched.push(path.clone());
            }
        }
        let left = self.importer_diagnostics(&doc.analysis.path, Vec::new());
        let mut out = vec![publish(doc.uri, None, left)];
        for path in touched {
            out.extend(self.publish_path(&path));
        }
        out
    }

    /// Re-check the open documents that import a changed path (the changed
    /// ones are checked already), then publish for everything affected.
    fn recheck_and_publish(&mut self, changed: Vec<String>) -> Vec<Notification> {
        let dependents: Vec<String> = self
            .docs
            .iter()
            .filter(|(_, d)| {
                !changed.contains(&d.analysis.path)
                    && d.analysis
                        .imported_paths()
                        .iter()
                        .any(|p| changed.iter().any(|c| same_file(p, c)))
            })
            .map(|(u, _)| u.clone())
            .collect();
        for key in &dependents {
            let Some(doc) = self.docs.get(key) else {
                continue;
            };
            let analysis = Analysis::new(
                &doc.analysis.path,
                &doc.text,
                &OpenFiles { docs: &self.docs },
            );
            if let Some(doc) = self.docs.get_mut(key) {
                doc.analysis = analysis;
            }
        }
        let mut paths: Vec<String> = Vec::new();
        let keys: Vec<String> = self
            .docs
            .iter()
            .filter(|(_, d)| changed.contains(&d.analysis.path))
            .map(|(k, _)| k.clone())
            .chain(dependents)
            .collect();
        for key in &keys {
            let Some(doc) = self.docs.get(key) else {
                continue;
            };
            paths.push(doc.analysis.path.clone());
            let mut found: HashMap<String, Vec<FileDiagnostic>> = HashMap::new();
            for d in doc.analysis.diagnostics() {
                if d.path != doc.analysis.path {
                    found.entry(d.path.clone()).or_default().push(d);
                }
            }
            for p in doc.analysis.imported_paths() {
                found.entry(p).or_default();
            }
            for by in self.from_importers.values_mut() {
                by.remove(key);
            }
            for (p, diags) in found {
                paths.push(p.clone());
                self.from_importers
                    .entry(p)
                    .or_default()
                    .insert(key.clone(), diags);
            }
        }
        paths.sort();
        paths.dedup();
        paths.iter().flat_map(|p| self.publish_path(p)).collect()
    }

    /// Publish a path's diagnostics: its own document's (when open) and
    /// those its importers found in it, without repeats.
    fn publish_path(&self, path: &str) -> Option<Notification> {
        let open = self.docs.values().find(|d| d.analysis.path == path);
        let own: Vec<FileDiagnostic> = open
            .map(|d| {
                d.analysis
                    .diagnostics()
                    .into_iter()
                    .filter(|f| f.path == path)
                    .collect()
            })
            .unwrap_or_default();
        let (uri, version) = match open {
            Some(d) => (d.uri.clone(), Some(d.version)),
            None => (uri_of(path)?, None),
        };
        Some(publish(uri, version, self.importer_diagnostics(path, own)))
    }

    /// `own` and what open importers found in `path`, without repeats, as LSP's.
    fn importer_diagnostics(
        &self,
        path: &str,
        mut own: Vec<FileDiagnostic>,
    ) -> Vec<lsp_types::Diagnostic> {
        if let Some(by) = self.from_importers.get(path) {
            let mut importers: Vec<_> = by.iter().collect();
            importers.sort_by(|a, b| a.0.cmp(b.0));
            for (_, found) in importers {
                for d in found {
                    if !own.iter().any(|x| x.diagnostic == d.diagnostic) {
                        own.push(d.clone());
                    }
                }
            }
        }
        own.into_iter().map(with_related).collect()
    }
}

fn same_file(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn publish(
    uri: Uri,
    version: Option<i32>,
    diagnostics: Vec<lsp_types::Diagnostic>,
) -> Notification {
    Notification::new(
        PublishDiagnostics::METHOD.to_string(),
        PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        },
    )
}

fn location(r: &FileRange) -> Option<Location> {
    Some(Location {
        uri: uri_of(&r.path)?,
        range: r.range,
    })
}

fn with_related(d: FileDiagnostic) -> lsp_types::Diagnostic {
    let related: Vec<DiagnosticRelatedInformation> = d
        .related
        .iter()
        .filter_map(|(r, message)| {
            Some(DiagnosticRelatedInformation {
                location: location(r)?,
                message: message.clone(),
            })
        })
        .collect();
    lsp_types::Diagnostic {
        related_information: (!related.is_empty()).then_some(related),
        ..d.diagnostic
    }
}

/// Apply LSP content changes in order (a change without a range replaces
/// the whole text).
pub fn apply_changes(text: &str, changes: &[TextDocumentContentChangeEvent]) -> String {
    let mut text = text.to_string();
    for change in changes {
        match change.range {
            None => text = change.text.clone(),
            Some(range) => {
                let file = SourceFile::new(String::new(), text);
                let start = super::analysis::offset_of(&file, range.start);
                let end = super::analysis::offset_of(&file, range.end).max(start);
                let mut t = file.text;
                t.replace_range(start..end, &change.text);
                text = t;
            }
        }
    }
    text
}
