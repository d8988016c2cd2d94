//! AST -> checked [`Model`] + diagnostics.
//!
//! One pass reports every problem it can find: a broken layer poisons only
//! the shapes after it, never the rest of the checks.

pub mod config;
pub mod depth;
pub mod diag;
pub mod eval;
pub mod net;
pub mod nonhe;
pub mod render;
pub mod topics;

pub use diag::{Code, Diagnostic, Edit, FileId, Fix, Label, Severity, SourceFile, Sources};
pub use net::Origin;

use crate::ir::{Model, Op, OpKind, Shape, Value};
use crate::syntax::{self, Expr, File, Item, Span};
use eval::Env;
use net::{ActInfo, BlockInfo, Builder, Defs};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The result of checking one model file.
#[derive(Debug)]
pub struct Checked {
    pub sources: Sources,
    /// Present when there were no errors (warnings allowed).
    pub model: Option<Model>,
    /// Sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Where each op (by name) was written.
    pub origins: HashMap<String, Origin>,
    /// The network as far as it could be built, levels assigned, when there
    /// is no `model` (errors); empty otherwise (see [`Checked::net`]).
    pub partial_net: Vec<Op>,
    /// Every `act` and `block` definition, in all files, in reading order.
    pub definitions: Vec<Definition>,
    /// For each imported file, the `import` in the main file that led to it.
    pub imported_by: HashMap<FileId, Span>,
    /// `depth` in `he`, when given and valid.
    pub depth_budget: Option<u32>,
    /// The syntax tree of each file that parsed (the main file first).
    pub syntax: Vec<(FileId, File)>,
}

/// An `act` or `block` definition, for editors.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub file: FileId,
    pub name_span: Span,
    /// The whole definition.
    pub span: Span,
    pub kind: DefinitionKind,
}

#[derive(Debug, Clone)]
pub enum DefinitionKind {
    /// None when the definition has errors.
    Act(Option<crate::ir::PolyAct>),
    /// Parameter names with their defaults as written.
    Block {
        params: Vec<(String, Option<String>)>,
    },
}

impl Checked {
    /// The expanded network: the model's, or as far as it could be built.
    pub fn net(&self) -> &[Op] {
        self.model.as_ref().map_or(&self.partial_net, |m| &m.net)
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    }
}

/// The model file itself could not be read (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error("{path}: {size} bytes, over the limit of {MAX_FILE_BYTES} bytes for a model file")]
    TooLarge { path: String, size: u64 },
}

impl LoadError {
    /// What to do about it, for the `help:` line.
    pub fn help(&self) -> &'static str {
        match self {
            LoadError::Io { .. } => "give the path of a readable .pnn file",
            LoadError::NotUtf8 { .. } => "save the file as UTF-8 text",
            LoadError::NotAFile { .. } => "give a .pnn file, not a folder, a device or a pipe",
            LoadError::TooLarge { .. } => {
                "a model file is a few kilobytes; generate repeated layers with `for` loops and blocks"
            }
        }
    }
}

/// Largest model or imported file read, in bytes. The largest model the
/// checker accepts (100000 layers written out) is about 1 MiB; the cap keeps
/// an import of a huge file from exhausting memory.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Loading a model for a later stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {errors} error(s) in the model\n{rendered}")]
    Invalid {
        path: String,
        errors: usize,
        rendered: String,
    },
}

/// Read, parse and check a model file; the entry point for later stages.
pub fn load_model(path: &Path) -> Result<Model, ModelError> {
    let checked = check_path(path)?;
    match checked.model {
        Some(m) if !checked.has_errors() => Ok(m),
        _ => Err(ModelError::Invalid {
            path: path.display().to_string(),
            errors: checked.count(Severity::Error),
            rendered: render::text(&checked.sources, &checked.diagnostics, false),
        }),
    }
}

/// Read a model file: a regular file of at most [`MAX_FILE_BYTES`] of UTF-8.
/// Devices, pipes and folders are refused before they are opened.
fn read_text(path: &Path) -> Result<String, LoadError> {
    use std::io::Read;
    let display = path.display().to_string();
    let io = |source| LoadError::Io {
        path: display.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile { path: display });
    }
    let too_large = |size| LoadError::TooLarge {
        path: display.clone(),
        size,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    // The file may have grown since `metadata`.
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        path: display,
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Where the checker reads imported files from: the disk, or (in an
/// editor) open, unsaved buffers over it.
pub trait Files {
    /// The identity of a path, for import cycles and repeated imports.
    fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf>;
    /// The text of a file, with the limits of [`read_text`].
    fn read(&self, path: &Path) -> Result<String, LoadError>;
}

/// The file system.
pub struct Disk;

impl Disk {
    /// A model file's text, with the limits of imports.
    pub fn read_path(&self, path: &Path) -> Result<String, LoadError> {
        read_text(path)
    }
}

impl Files for Disk {
    fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn read(&self, path: &Path) -> Result<String, LoadError> {
        read_text(path)
    }
}

/// Check the file at `path`; imports resolve relative to its folder.
pub fn check_path(path: &Path) -> Result<Checked, LoadError> {
    let text = read_text(path)?;
    Ok(check_source(&path.display().to_string(), &text))
}

/// Check `text` as if read from `path` (imports resolve relative to `path`'s folder).
pub fn check_source(path: &str, text: &str) -> Checked {
    check_source_in(path, text, &Disk)
}

/// [`check_source`] with imports read through `files`.
pub fn check_source_in(path: &str, text: &str, files: &dyn Files) -> Checked {
    let mut sources = Sources::default();
    let main = sources.add(path.to_string(), text.to_string());
    let mut diags = Vec::new();
    let ast = match syntax::parse(text) {
        Ok(f) => f,
        Err(e) => {
            diags.push(syntax_diag(main, e));
            return finish(sources, Built::default(), diags);
        }
    };
    let mut asts: Vec<(FileId, File)> = vec![(main, ast)];
    let mut loader = Loader {
        sources: &mut sources,
        files: &mut asts,
        diags: &mut diags,
        fs: files,
        loaded: Vec::new(),
        failed: false,
        imported_by: HashMap::new(),
    };
    let main_dir = Path::new(path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut stack = vec![
        files
            .canonicalize(Path::new(path))
            .unwrap_or_else(|_| PathBuf::from(path)),
    ];
    loader.imports(0, &main_dir, &mut stack);
    let imports_failed = loader.failed;
    let imported_by = std::mem::take(&mut loader.imported_by);
    let mut built = check_files(&sources, &asts, imports_failed, &mut diags);
    built.imported_by = imported_by;
    built.syntax = asts;
    finish(sources, built, diags)
}

fn syntax_diag(file: FileId, e: syntax::SyntaxError) -> Diagnostic {
    Diagnostic::new(Code::Syntax, e.message, Label::new(file, e.span, "here")).help(e.help)
}

/// What [`check_files`] built, for [`Checked`].
#[derive(Default)]
struct Built {
    model: Option<Model>,
    partial_net: Vec<Op>,
    origins: HashMap<String, Origin>,
    definitions: Vec<Definition>,
    imported_by: HashMap<FileId, Span>,
    depth_budget: Option<u32>,
    syntax: Vec<(FileId, File)>,
}

fn finish(sources: Sources, built: Built, mut diags: Vec<Diagnostic>) -> Checked {
    // The same mistake inside a block used many times is reported once.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| {
        seen.insert((
            d.code,
            d.primary.file,
            d.primary.span.start,
            d.primary.span.end,
            d.message.clone(),
        ))
    });
    // Root causes first, then by place.
    diags.sort_by_key(|d| {
        (
            !d.root_cause,
            d.primary.file,
            d.primary.span.start,
            d.primary.span.end,
        )
    });
    let has_errors = diags.iter().any(|d| d.severity() == Severity::Error);
    let (model, partial_net) = match built.model {
        Some(m) if !has_errors => (Some(m), Vec::new()),
        Some(m) => (None, m.net),
        None => (None, built.partial_net),
    };
    Checked {
        sources,
        model,
        diagnostics: diags,
        origins: built.origins,
        partial_net,
        definitions: built.definitions,
        imported_by: built.imported_by,
        depth_budget: built.depth_budget,
        syntax: built.syntax,
    }
}

/// Reads imported files (depth first), reporting missing files and cycles.
struct Loader<'a> {
    sources: &'a mut Sources,
    files: &'a mut Vec<(FileId, File)>,
    diags: &'a mut Vec<Diagnostic>,
    fs: &'a dyn Files,
    loaded: Vec<PathBuf>,
    /// For each imported file, the main file's `import` that led to it.
    imported_by: HashMap<FileId, Span>,
    /// Whether an import could not be read or parsed: names it would have
    /// defined are then unknown, and not reported again as such.
    failed: bool,
}

impl Loader<'_> {
    fn imports(&mut self, index: usize, dir: &Path, stack: &mut Vec<PathBuf>) {
        let (file, imports): (FileId, Vec<(String, Span)>) = {
            let (id, ast) = &self.files[index];
            let imports = ast
                .items
                .iter()
                .filter_map(|i| match i {
                    Item::Import { path, span } => Some((path.clone(), *span)),
                    _ => None,
                })
                .collect();
            (*id, imports)
        };
        for (rel, span) in imports {
            let joined = dir.join(&rel);
            let canonical = match self.fs.canonicalize(&joined) {
                Ok(c) => c,
                Err(e) => {
                    self.failed = true;
                    self.diags.push(
                        Diagnostic::new(
                            Code::ImportFailed,
                            format!("cannot import `{rel}`: {e}"),
                            Label::new(file, span, format!("looked for {}", joined.display())),
                        )
                        .help("import paths are relative to the importing file's folder")
                        .root_cause(),
                    );
                    continue;
                }
            };
            if stack.contains(&canonical) {
                self.diags.push(
                    Diagnostic::new(
                        Code::ImportCycle,
                        format!("import cycle: `{rel}` is already being imported"),
                        Label::new(file, span, "imports a file that imports this one"),
                    )
                    .help("move the shared blocks into a third file that both import"),
                );
                continue;
            }
            if self.loaded.contains(&canonical) {
                continue;
            }
            self.loaded.push(canonical.clone());
            let text = match self.fs.read(&joined) {
                Ok(t) => t,
                Err(e) => {
                    self.failed = true;
                    self.diags.push(
                        Diagnostic::new(
                            Code::ImportFailed,
                            format!("cannot import `{rel}`"),
                            Label::new(file, span, e.to_string()),
                        )
                        .help(e.help())
                        .root_cause(),
                    );
                    continue;
                }
            };
            let id = self.sources.add(joined.display().to_string(), text);
            let root = self.imported_by.get(&file).copied().unwrap_or(span);
            self.imported_by.insert(id, root);
            match syntax::parse(self.sources.text(id)) {
                Ok(ast) => {
                    for item in &ast.items {
                        if !matches!(item, Item::Import { .. } | Item::Act(_) | Item::Block(_)) {
                            self.diags.push(
                                Diagnostic::new(
                                    Code::NotAllowedInImport,
                                    "an imported file may only hold `import`, `act` and `block`",
                                    Label::new(id, item.span(), "not allowed in an imported file"),
                                )
                                .with(Label::new(file, span, "imported here"))
                                .help("keep `model`, `input`, `classes`, `net`, `train` and `he` in the model file"),
                            );
                        }
                    }
                    self.files.push((id, ast));
                    let next = self.files.len() - 1;
                    let sub_dir = joined.parent().map(Path::to_path_buf).unwrap_or_default();
                    stack.push(canonical);
                    self.imports(next, &sub_dir, stack);
                    stack.pop();
                }
                Err(e) => {
                    self.failed = true;
                    self.diags.push(
                        syntax_diag(id, e)
                            .with(Label::new(file, span, "imported here"))
                            .root_cause(),
                    );
                }
            }
        }
    }
}

/// The main file's single-occurrence items, each with the span where it was written.
#[derive(Default)]
struct Header<'a> {
    model: Option<(&'a syntax::Ident, Span)>,
    input: Option<(&'a Expr, Span)>,
    classes: Option<(&'a Expr, Span)>,
    net: Option<(&'a [syntax::Stmt], Span)>,
    train: Option<(&'a syntax::Section, Span)>,
    he: Option<(&'a syntax::Section, Span)>,
}

/// Fill `slot` with `value`, or report E0005 when it was already given.
fn once<T>(
    slot: &mut Option<(T, Span)>,
    value: T,
    what: &str,
    span: Span,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    match slot {
        Some((_, first)) => diags.push(
            Diagnostic::new(
                Code::Duplicate,
                format!("`{what}` is given twice"),
                Label::new(file, span, "given again here"),
            )
            .help(format!("keep one `{what}`"))
            .with(Label::new(file, *first, "first given here")),
        ),
        None => *slot = Some((value, span)),
    }
}

/// Collect the main file's header items, reporting duplicates and missing ones.
fn header<'a>(ast: &'a File, main: FileId, end: Span, diags: &mut Vec<Diagnostic>) -> Header<'a> {
    let mut h = Header::default();
    for item in &ast.items {
        let span = item.span();
        match item {
            Item::Model { name, .. } => once(&mut h.model, name, "model", span, main, diags),
            Item::Input { shape, .. } => once(&mut h.input, shape, "input", span, main, diags),
            Item::Classes { value, .. } => {
                once(&mut h.classes, value, "classes", span, main, diags)
            }
            Item::Net { body, .. } => once(&mut h.net, body.as_slice(), "net", span, main, diags),
            Item::Train(s) => once(&mut h.train, s, "train", span, main, diags),
            Item::He(s) => once(&mut h.he, s, "he", span, main, diags),
            _ => {}
        }
    }
    // A file of definitions only is a library: it has no sections to miss.
    let library = ast
        .items
        .iter()
        .any(|i| matches!(i, Item::Act(_) | Item::Block(_)))
        && ast
            .items
            .iter()
            .all(|i| matches!(i, Item::Import { .. } | Item::Act(_) | Item::Block(_)));
    if library {
        return h;
    }
    let mut missing = |what: &str, example: &str| {
        diags.push(
            Diagnostic::new(
                Code::MissingSection,
                format!("the model has no `{what}`"),
                Label::new(main, end, format!("`{what}` expected")),
            )
            .help(format!("add `{example}`"))
            .root_cause(),
        );
    };
    if h.model.is_none() {
        missing("model", "model my_model");
    }
    if h.input.is_none() {
        missing("input", "input [1, 28, 28]");
    }
    if h.classes.is_none() {
        missing("classes", "classes 10");
    }
    if h.net.is_none() {
        missing("net", "net { flatten; dense(classes) }");
    }
    h
}

/// The `act` and `block` definitions of every file (for the network, and
/// for editors); a name defined twice is E0005.
fn definitions<'a>(
    files: &'a [(FileId, File)],
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> (Defs<'a>, Vec<Definition>) {
    let mut list = Vec::new();
    let mut defs = Defs {
        acts: HashMap::new(),
        blocks: HashMap::new(),
        globals: Env::new(),
    };
    let mut def_spans: HashMap<String, (FileId, Span)> = HashMap::new();
    for (file, ast) in files {
        for item in &ast.items {
            let name = match item {
                Item::Act(a) => &a.name,
                Item::Block(b) => &b.name,
                _ => continue,
            };
            if let Some((ff, fs)) = def_spans.get(&name.name) {
                diags.push(
                    Diagnostic::new(
                        Code::Duplicate,
                        format!("`{}` is defined twice", name.name),
                        Label::new(*file, name.span, "defined again here"),
                    )
                    .with(Label::new(*ff, *fs, "first defined here"))
                    .help("rename one of the definitions"),
                );
                continue;
            }
            if net::BUILTINS.contains(&name.name.as_str()) {
                diags.push(builtin_name(item, name, *file));
                continue;
            }
            def_spans.insert(name.name.clone(), (*file, name.span));
            match item {
                Item::Act(a) => {
                    let info = act_info(a, *file, diags);
                    list.push(Definition {
                        name: a.name.name.clone(),
                        file: *file,
                        name_span: a.name.span,
                        span: a.span,
                        kind: DefinitionKind::Act(info.act.clone()),
                    });
                    defs.acts.insert(a.name.name.clone(), info);
                }
                Item::Block(b) => {
                    list.push(block_definition(b, *file, sources.text(*file)));
                    defs.blocks.insert(
                        b.name.name.clone(),
                        BlockInfo {
                            def: b,
                            file: *file,
                        },
                    );
                }
                _ => {}
            }
        }
    }
    (defs, list)
}

fn block_definition(b: &syntax::BlockDef, file: FileId, text: &str) -> Definition {
    let params = b
        .params
        .iter()
        .map(|p| {
            let default = p
                .default
                .as_ref()
                .and_then(|d| text.get(d.span.start..d.span.end))
                .map(String::from);
            (p.name.name.clone(), default)
        })
        .collect();
    Definition {
        name: b.name.name.clone(),
        file,
        name_span: b.name.span,
        span: b.span,
        kind: DefinitionKind::Block { params },
    }
}

/// A user definition may not take a built-in layer's name: the layer would
/// silently win at every use.
fn builtin_name(item: &Item, name: &syntax::Ident, file: FileId) -> Diagnostic {
    let what = if matches!(item, Item::Act(_)) {
        "an activation"
    } else {
        "a block"
    };
    Diagnostic::new(
        Code::Duplicate,
        format!("`{}` is a built-in layer and cannot name {what}", name.name),
        Label::new(file, name.span, "built-in layer name"),
    )
    .help(format!(
        "rename it, e.g. `my_{}`: built-in layer names ({}) are reserved",
        name.name,
        net::BUILTINS.join(", ")
    ))
}

fn act_info(a: &syntax::ActDef, file: FileId, diags: &mut Vec<Diagnostic>) -> ActInfo {
    let arg_span = |key: &str| {
        a.call
            .args
            .iter()
            .find(|x| x.name.as_ref().is_some_and(|n| n.name == key))
            .map_or(a.call.span, |x| x.span)
    };
    ActInfo {
        act: config::act(a, file, diags),
        file,
        span: a.name.span,
        degree_span: arg_span("degree"),
        range_span: arg_span("range"),
    }
}

/// What the network is built from besides its definitions.
struct NetInput {
    shape: Option<Shape>,
    classes: Option<usize>,
    imports_failed: bool,
}

/// The expanded network with levels assigned, and what later checks need of it.
struct Net {
    /// Expansion stopped at the layer limit.
    truncated: bool,
    ops: Vec<crate::ir::Op>,
    params: u64,
    depth: u32,
    used_acts: Vec<String>,
    origins: HashMap<String, Origin>,
}

/// Expand `net`, check its output against `classes`, place activations,
/// fold batchnorms and assign levels.
fn build_net(
    h: &Header<'_>,
    defs: &Defs<'_>,
    sources: &Sources,
    input: NetInput,
    placement: config::Placement,
    main: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Net {
    let mut builder = Builder::new(defs, sources);
    builder.imports_failed = input.imports_failed;
    let (mut ops, out_shape) = match h.net {
        Some((body, span)) => builder.build(body, main, span.start, input.shape),
        None => (Vec::new(), None),
    };
    if let (Some(out), Some(c), Some((body, net_span))) = (&out_shape, input.classes, h.net)
        && out.dims() != [c]
    {
        let at = body.last().map_or(net_span, |s| s.span());
        diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                format!("the network ends with shape {out}, but the model has {c} classes"),
                Label::new(main, at, format!("output is {out}")),
            )
            .help("end the network with `dense(classes)` on a flat input"),
        );
    }
    let params = builder.total_params();
    let used_acts = std::mem::take(&mut builder.used_acts);
    let origins = std::mem::take(&mut builder.origins);
    diags.append(&mut builder.diags);

    depth::apply_placement(&mut ops, placement);
    depth::mark_foldable(&mut ops);
    let depth = depth::assign_levels(&mut ops, 0);
    Net {
        truncated: builder.limit_crossed(),
        ops,
        params,
        depth,
        used_acts,
        origins,
    }
}

/// SHA-256 of every source file's text, in the order read (hex).
fn source_hash(sources: &Sources) -> String {
    let mut hasher = Sha256::new();
    for f in &sources.files {
        hasher.update(f.text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

fn check_files(
    sources: &Sources,
    files: &[(FileId, File)],
    imports_failed: bool,
    diags: &mut Vec<Diagnostic>,
) -> Built {
    let main = files[0].0;
    let end = Span::new(sources.text(main).len(), sources.text(main).len());
    let h = header(&files[0].1, main, end, diags);
    let (mut defs, definitions) = definitions(files, sources, diags);

    // Header values.
    let input = h.input.and_then(|(e, _)| input_shape(e, main, diags));
    let (classes, class_names) = h
        .classes
        .map_or((None, Vec::new()), |(e, _)| classes(e, main, diags));
    // Without a valid `classes`, uses of the name stay silent: the cause is reported.
    let classes_value = classes.map_or_else(eval::unknown, |c| Value::Int(c as i64));
    defs.globals.insert("classes".into(), classes_value);
    let train = config::train(h.train.map(|(s, _)| s), main, diags);
    if let Some(spec) = &train.config.data {
        data_fit(
            spec,
            h.input.map(|(_, s)| s),
            input.as_ref(),
            h.classes,
            classes,
            main,
            diags,
        );
    }
    let (he, depth_span) = config::he(h.he.map(|(s, _)| s), main, diags);

    let net = build_net(
        &h,
        &defs,
        sources,
        NetInput {
            shape: input.clone(),
            classes,
            imports_failed,
        },
        train.placement,
        main,
        diags,
    );
    lints(
        &net.ops,
        &net.origins,
        &defs,
        &net.used_acts,
        &train,
        main,
        diags,
    );
    // A truncated network's depth says nothing: the layer limit is the cause.
    if let (Some(budget), Some(dspan), false) = (he.depth_budget, depth_span, net.truncated)
        && net.depth > budget
    {
        budget_error(
            &net.ops,
            &net.origins,
            budget,
            net.depth,
            main,
            dspan,
            diags,
        );
    }

    let depth_budget = he.depth_budget;
    let (model, partial_net) = match (h.model, input, classes) {
        (Some((name, _)), Some(input), Some(classes)) => (
            Some(Model {
                name: name.name.clone(),
                source_hash: source_hash(sources),
                input,
                classes,
                class_names,
                net: net.ops,
                train: train.config,
                he,
                params: net.params,
                depth: net.depth,
            }),
            Vec::new(),
        ),
        _ => (None, net.ops),
    };
    Built {
        model,
        partial_net,
        origins: net.origins,
        definitions,
        imported_by: HashMap::new(),
        depth_budget,
        syntax: Vec::new(),
    }
}

fn input_shape(e: &Expr, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<Shape> {
    let v = eval::eval(e, &Env::new(), file, diags)?;
    let dims: Option<Vec<usize>> = match &v {
        Value::List(items) if (1..=3).contains(&items.len()) => items
            .iter()
            .map(|i| i.as_usize().filter(|d| (1..=net::MAX_DIM).contains(d)))
            .collect(),
        _ => None,
    };
    let Some(dims) = dims else {
        diags.push(
            Diagnostic::new(Code::OutOfRange, format!("invalid input shape `{v}`"), Label::new(file, e.span, "expected 1 to 3 positive sizes"))
                .help(format!(
                    "write [features], [channels, length] or [channels, height, width], each from 1 to {}",
                    net::MAX_DIM
                ))
                .root_cause(),
        );
        return None;
    };
    let shape = Shape(dims);
    if shape.numel() > net::MAX_NUMEL {
        diags.push(
            Diagnostic::new(
                Code::TooLarge,
                format!(
                    "the input {shape} has {} values, over the limit of {}",
                    net::value_count(shape.numel()),
                    net::MAX_NUMEL
                ),
                Label::new(file, e.span, "input too large"),
            )
            .help("check the sizes: an HE input is one ciphertext's worth of values or a few, not billions")
            .root_cause(),
        );
        return None;
    }
    Some(shape)
}

fn classes(e: &Expr, file: FileId, diags: &mut Vec<Diagnostic>) -> (Option<usize>, Vec<String>) {
    let Some(v) = eval::eval(e, &Env::new(), file, diags) else {
        return (None, Vec::new());
    };
    match &v {
        Value::Int(n) if (2..=1_000_000).contains(n) => (Some(*n as usize), Vec::new()),
        Value::List(items)
            if items.len() >= 2 && items.iter().all(|i| matches!(i, Value::Str(_))) =>
        {
            let names: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect();
            (Some(names.len()), names)
        }
        _ => {
            diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!("invalid number of classes `{v}`"),
                    Label::new(file, e.span, "expected 2 to 1000000, or a list of names"),
                )
                .help("write `classes 10` or `classes [\"cat\", \"dog\"]`")
                .root_cause(),
            );
            (None, Vec::new())
        }
    }
}

/// Warnings that need the whole model: degrees, penalties, folding, dropout.
fn lints(
    ops: &[crate::ir::Op],
    origins: &HashMap<String, Origin>,
    defs: &Defs<'_>,
    used: &[String],
    train: &config::TrainInfo,
    main: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    for name in used {
        let Some(info) = defs.acts.get(name) else {
            continue;
        };
        let Some(act) = &info.act else { continue };
        match &train.config.boundary {
            None if act.degree > 6 => {
                let mut d = Diagnostic::new(
                    Code::HighDegreeNoBoundary,
                    format!("activation `{name}` has degree {} but training has no boundary loss", act.degree),
                    Label::new(info.file, info.degree_span, "high degree"),
                )
                .help("add `boundary: exp(penalty: B/2, weight: 10)` to `train` (or remove `boundary: none`): high-degree polynomials explode outside their fit range");
                if let Some(s) = train.boundary_span {
                    d = d.with(Label::new(main, s, "boundary loss turned off here"));
                }
                diags.push(d);
            }
            Some(b) => {
                if let (Some(p), Some(ps)) = (b.penalty, train.penalty_span)
                    && p > act.range
                {
                    diags.push(
                        Diagnostic::new(
                            Code::PenaltyAboveRange,
                            format!("boundary penalty {p} is above the fit range {} of `{name}`", act.range),
                            Label::new(main, ps, "penalty threshold"),
                        )
                        .with(Label::new(info.file, info.range_span, "fit range"))
                        .help(format!("inputs between {} and {p} are not penalised but lie outside the fit: use a penalty at most {}", act.range, act.range)),
                    );
                }
            }
            None => {}
        }
    }
    let all: Vec<&crate::ir::Op> = {
        let mut v = Vec::new();
        fn walk<'a>(ops: &'a [crate::ir::Op], v: &mut Vec<&'a crate::ir::Op>) {
            for o in ops {
                v.push(o);
                for seq in o.kind.nested() {
                    walk(seq, v);
                }
            }
        }
        walk(ops, &mut v);
        v
    };
    for op in all {
        let Some(o) = origins.get(&op.name) else {
            continue;
        };
        let mut d = match &op.kind {
            OpKind::BatchNorm { foldable: false, .. } => Diagnostic::new(
                Code::UnfoldableBatchNorm,
                format!("batchnorm `{}` cannot be folded into a neighbouring layer", op.name),
                Label::new(o.file, o.span, "costs one extra level under HE"),
            )
            .help("place it right after a `conv`/`dense` or a polynomial activation, or right before a `conv`/`dense`"),
            OpKind::Dropout { .. } => Diagnostic::new(
                Code::DropoutAtInference,
                format!("dropout `{}` only acts during training", op.name),
                Label::new(o.file, o.span, "the identity at inference"),
            )
            .help("nothing to change if you meant it as training regularisation; remove it otherwise"),
            _ => continue,
        };
        d.secondary.extend(o.trace.iter().take(3).cloned());
        diags.push(d);
    }
}

/// E0500 at the first op whose cumulative level passes the budget.
fn budget_error(
    ops: &[crate::ir::Op],
    origins: &HashMap<String, Origin>,
    budget: u32,
    depth: u32,
    main: FileId,
    dspan: Span,
    diags: &mut Vec<Diagnostic>,
) {
    fn first_over(ops: &[crate::ir::Op], budget: u32) -> Option<&crate::ir::Op> {
        for op in ops {
            if op.level > budget {
                return op
                    .kind
                    .nested()
                    .into_iter()
                    .find_map(|seq| first_over(seq, budget))
                    .or(Some(op));
            }
        }
        None
    }
    let Some(op) = first_over(ops, budget) else {
        return;
    };
    let Some(o) = origins.get(&op.name) else {
        return;
    };
    let mut d = Diagnostic::new(
        Code::DepthBudget,
        format!("multiplicative depth {depth} exceeds the budget of {budget}"),
        Label::new(o.file, o.span, format!("`{}` reaches level {}", op.name, op.level)),
    )
    .with(Label::new(main, dspan, format!("budget {budget} set here")))
    .help("lower polynomial degrees (degree d costs ceil(log2(d+1)) levels), remove layers, or raise `depth` in `he`");
    d.secondary.extend(o.trace.iter().take(3).cloned());
    diags.push(d);
}

/// The data set named in `train` must produce samples of the declared input
/// shape and labels within the declared classes.
fn data_fit(
    spec: &crate::ir::DataSpec,
    input_span: Option<Span>,
    input: Option<&Shape>,
    classes_at: Option<(&Expr, Span)>,
    classes: Option<usize>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    if let (Some(want), Some(have), Some(span)) = (spec.sample_shape(), input, input_span)
        && want != have.dims()
    {
        let want = Shape(want);
        diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                format!(
                    "data set `{}` gives samples of shape {want}, but the model's input is {have}",
                    spec.name()
                ),
                Label::new(file, span, format!("declared {have}")),
            )
            .help(format!(
                "write `input {want}`, or change the data set's options"
            )),
        );
    }
    if let (Some(n), Some(c), Some((_, span))) = (spec.classes(), classes, classes_at)
        && n != c
    {
        diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                format!(
                    "data set `{}` has {n} classes, but the model declares {c}",
                    spec.name()
                ),
                Label::new(file, span, format!("declared {c}")),
            )
            .help(format!("write `classes {n}`")),
        );
    }
}
