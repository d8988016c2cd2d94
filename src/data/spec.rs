//! A data call given on the command line (`--dataset`, `pnnc data inspect`),
//! parsed as the `data:` entry of a model file is.

use crate::ir::{DataSpec, Value};

/// Parse `name` or `name(key: value, ...)` as written in a model's `data:` entry.
pub fn parse_spec(text: &str) -> Result<DataSpec, String> {
    let text = text.trim();
    let (name, rest) = match text.find('(') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let name = name.trim().replace('-', "_");
    let mut args = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .trim_end()
            .strip_suffix(')')
            .ok_or("missing `)` at the end of the data call")?;
        for part in split_args(inner) {
            let (k, v) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}`: expected `key: value`"))?;
            args.push((k.trim().to_string(), parse_value(v.trim())));
        }
    }
    DataSpec::from_call(&name, &args).map_err(|errs| {
        errs.iter()
            .map(|e| {
                let at = e
                    .arg
                    .as_deref()
                    .map(|a| format!("`{a}`: "))
                    .unwrap_or_default();
                let help = e
                    .help
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!("{at}{}{help}", e.message)
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Split on commas outside quotes and brackets.
fn split_args(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut depth) = (Vec::new(), String::new(), false, 0);
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out.into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

fn parse_value(v: &str) -> Value {
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Value::Str(s.to_string());
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::Int(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return Value::Float(f);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::Ident(v.to_string()),
    }
}
