//! Hovers: a layer's shape, parameters and levels; an activation's
//! polynomial; a block use's expansion.

use super::Analysis;
use crate::check::DefinitionKind;
use crate::ir::{FitMethod, FitTarget, Op, PolyAct, levels};
use crate::syntax::{Call, Item, Span};
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind, Position};

/// Most layers listed for one line written once but expanded many times.
const MAX_LISTED: usize = 8;

impl Analysis {
    /// What to show for the position: None where there is nothing to say.
    pub fn hover(&self, pos: Position) -> Option<Hover> {
        let offset = self.offset(pos);
        let (text, span) = self
            .definition_hover(offset)
            .or_else(|| self.call_hover(offset))?;
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: text,
            }),
            range: Some(self.range(0, span)),
        })
    }

    /// On the name of an `act` or `block` definition.
    fn definition_hover(&self, offset: usize) -> Option<(String, Span)> {
        let ast = self.ast()?;
        let name = ast.items.iter().find_map(|i| match i {
            Item::Act(a) if contains(a.name.span, offset) => Some(&a.name),
            Item::Block(b) if contains(b.name.span, offset) => Some(&b.name),
            _ => None,
        })?;
        let def = self
            .checked
            .definitions
            .iter()
            .find(|d| d.file == 0 && d.name_span == name.span)?;
        let text = match &def.kind {
            DefinitionKind::Act(act) => act_text(&def.name, act.as_ref(), self.uses(&def.name)),
            DefinitionKind::Block { .. } => format!("```pnn\n{}\n```", self.signature(&def.name)?),
        };
        Some((text, name.span))
    }

    /// On a statement: a layer, an activation site or a block use.
    fn call_hover(&self, offset: usize) -> Option<(String, Span)> {
        let call = self.call_at(offset)?;
        let name = call.name.name.as_str();
        if let Some(def) = self.definition(name)
            && let DefinitionKind::Block { .. } = def.kind
        {
            return Some((self.block_use_text(call)?, call.span));
        }
        let ops: Vec<&Op> = self
            .ops()
            .into_iter()
            .filter(|op| {
                self.checked
                    .origins
                    .get(&op.name)
                    .is_some_and(|o| o.file == 0 && o.span == call.span)
            })
            .collect();
        let mut text = String::new();
        if let Some(def) = self.definition(name)
            && let DefinitionKind::Act(act) = &def.kind
        {
            text = act_text(name, act.as_ref(), self.uses(name));
            text.push_str("\n\n---\n\n");
        }
        if ops.is_empty() {
            if text.is_empty() {
                return None;
            }
            text.push_str("not in the checked network (an earlier error, or not used)");
            return Some((text, call.span));
        }
        text.push_str(&self.layers_text(&ops));
        Some((text, call.span))
    }

    /// One line per layer (at most [`MAX_LISTED`]): name, op, shape, params, levels.
    fn layers_text(&self, ops: &[&Op]) -> String {
        let budget = self
            .checked
            .depth_budget
            .map_or(String::new(), |b| format!(" of budget {b}"));
        let line = |op: &Op| {
            format!(
                "`{}` {}  \noutput {} · {} parameters · level {} → {} (depth so far {}{budget})",
                op.name,
                op.summary(),
                op.output,
                op.params,
                op.level - op.levels,
                op.level,
                op.level
            )
        };
        if let [op] = ops {
            return line(op);
        }
        let mut text = format!("{} layers from this line:\n", ops.len());
        for op in ops.iter().take(MAX_LISTED) {
            text.push_str(&format!("\n- {}", line(op)));
        }
        if ops.len() > MAX_LISTED {
            text.push_str(&format!("\n- and {} more", ops.len() - MAX_LISTED));
        }
        text
    }

    /// A block use: the block's signature, the arguments here, and what it expanded to.
    fn block_use_text(&self, call: &Call) -> Option<String> {
        let name = call.name.name.as_str();
        let mut text = format!("```pnn\n{}\n```", self.signature(name)?);
        let written = self
            .text()
            .get(call.span.start..call.span.end)
            .unwrap_or(name);
        text.push_str(&format!("\nhere: `{written}`"));
        let ops: Vec<&Op> = self
            .ops()
            .into_iter()
            .filter(|op| {
                self.checked
                    .origins
                    .get(&op.name)
                    .is_some_and(|o| o.trace.iter().any(|l| l.file == 0 && l.span == call.span))
            })
            .collect();
        if let (Some(first), Some(last)) = (ops.first(), ops.last()) {
            // Top-level ops only: residual children are counted in their residual.
            let params: u64 = ops
                .iter()
                .filter(|op| !is_child(op, &ops))
                .map(|op| op.params)
                .sum();
            text.push_str(&format!(
                "\n\nexpands to {} layers: {} → {}, {} parameters, level {} → {}",
                ops.len(),
                first.input,
                last.output,
                params,
                first.level - first.levels,
                ops.iter().map(|o| o.level).max().unwrap_or(0)
            ));
        }
        Some(text)
    }

    /// `block name(a, b: default)`.
    pub(super) fn signature(&self, name: &str) -> Option<String> {
        let def = self.definition(name)?;
        let DefinitionKind::Block { params } = &def.kind else {
            return None;
        };
        let params: Vec<String> = params
            .iter()
            .map(|(p, default)| match default {
                Some(d) => format!("{p}: {d}"),
                None => p.clone(),
            })
            .collect();
        Some(format!("block {name}({})", params.join(", ")))
    }

    /// How many activation sites use the act `name`.
    pub(super) fn uses(&self, name: &str) -> usize {
        self.ops()
            .iter()
            .filter(|op| matches!(&op.kind, crate::ir::OpKind::Poly(a) if a.def == name))
            .count()
    }
}

/// Whether `op` lies inside a residual that is itself in `ops`.
fn is_child(op: &Op, ops: &[&Op]) -> bool {
    ops.iter()
        .any(|r| r.name != op.name && op.name.starts_with(&format!("{}.", r.name)))
}

fn contains(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

/// An activation: its polynomial, fit, basis and levels.
fn act_text(name: &str, act: Option<&PolyAct>, uses: usize) -> String {
    let Some(a) = act else {
        return format!("act `{name}` (its definition has errors)");
    };
    let method = match a.fit_method {
        FitMethod::LeastSquares { points } => format!("least squares at {points} points"),
        FitMethod::Minimax => "minimax".to_string(),
    };
    let fit = match a.fit {
        FitTarget::Relu => "relu",
        FitTarget::Silu => "silu",
        FitTarget::Gelu => "gelu",
    };
    let basis = a.basis.name();
    let origin = match &a.coeffs {
        Some(c) => format!(
            "given: {} for |x| <= {r}",
            crate::ir::raw_power_text(c),
            r = a.range
        ),
        None => format!("fitted to {fit} on [-{r}, {r}] by {method}", r = a.range),
    };
    format!(
        "act `{name}`: polynomial of degree {} ({} levels)  \n{origin}, {basis} basis, {}  \n{uses} activation site(s)",
        a.degree,
        levels::poly(a.degree),
        if a.learnable { "learnable" } else { "fixed" },
    )
}
