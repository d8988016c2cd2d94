//! The syntax tree of a `.pnn` file. Every node keeps its byte span so that
//! the checker can point at exactly what the user wrote.

/// Byte range `[start, end)` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Import { path: String, span: Span },
    Model { name: Ident, span: Span },
    Input { shape: Expr, span: Span },
    Classes { value: Expr, span: Span },
    Act(ActDef),
    Block(BlockDef),
    Net { body: Vec<Stmt>, span: Span },
    Train(Section),
    He(Section),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Import { span, .. }
            | Item::Model { span, .. }
            | Item::Input { span, .. }
            | Item::Classes { span, .. }
            | Item::Net { span, .. } => *span,
            Item::Act(a) => a.span,
            Item::Block(b) => b.span,
            Item::Train(s) | Item::He(s) => s.span,
        }
    }
}

/// `act p = poly(degree: 2, fit: relu, range: 13)`
#[derive(Debug, Clone, PartialEq)]
pub struct ActDef {
    pub name: Ident,
    pub call: Call,
    pub span: Span,
}

/// `block basic(cout, stride: 1) { ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A block parameter, with its default value when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
    pub span: Span,
}

/// `train { ... }` or `he { ... }`: `key: value` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub entries: Vec<Entry>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// A layer, an activation or a block use: `conv(16, 3)`, `p`, `basic(64)`.
    Call(Call),
    For {
        var: Ident,
        iter: Expr,
        body: Vec<Stmt>,
        span: Span,
    },
    Residual {
        body: Vec<Stmt>,
        shortcut: Option<Shortcut>,
        span: Span,
    },
    /// `concat { ... } { ... }`: the branches' outputs joined along the
    /// channel axis.
    Concat { branches: Vec<Branch>, span: Span },
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Call(c) => c.span,
            Stmt::For { span, .. } | Stmt::Residual { span, .. } | Stmt::Concat { span, .. } => {
                *span
            }
        }
    }
}

/// One `{ ... }` branch of a `concat`; its span covers the braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortcutKind {
    /// `shortcut { ... }`: always applied to the skip path.
    Always,
    /// `project { ... }`: applied only when the body changes the shape;
    /// otherwise the skip path is the identity.
    WhenShapeChanges,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shortcut {
    pub kind: ShortcutKind,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `name` or `name(args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: Ident,
    pub args: Vec<Arg>,
    /// Whether parentheses were written (`p` vs `p()`), for the formatter.
    pub parens: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A number as written (kept for the formatter) and its value.
    Number {
        text: String,
        value: Number,
    },
    Str(String),
    Bool(bool),
    Name(String),
    List(Vec<Expr>),
    /// `a..b`: integers a, a+1, ..., b-1.
    Range(Box<Expr>, Box<Expr>),
    Call(Call),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `( e )`, kept so the formatter can reproduce it.
    Paren(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
    /// An integer literal too large for 64 bits, or a float that is not finite.
    Overflow,
}
