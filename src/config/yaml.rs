//! Reading a recipe from YAML with errors that name the key, the value and the file.
//!
//! Two passes over the text: the top-level keys are checked against [`Recipe::KEYS`] first (so an
//! unknown key is reported by name, like MindCV's `"<k> does not exist in ArgumentParser!"`), then
//! the text is deserialised into [`Recipe`]; a type error is mapped back, through its line, to
//! the top-level key whose value it is in.
use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::Recipe;
use crate::error::{Error, Result};

/// Parser options: MindCV reads recipes with PyYAML (`yaml.safe_load`, YAML 1.1), so YAML 1.1
/// booleans (`yes`/`no`/`on`/`off`) are accepted; error messages are kept to one line.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options
}

/// The top-level keys of a YAML document, in file order (values are skipped). An empty
/// document (or one holding only `null`) has no keys.
struct TopKeys(Vec<String>);

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of recipe keys to values")
            }
            fn visit_unit<E>(self) -> std::result::Result<TopKeys, E> {
                Ok(TopKeys(Vec::new()))
            }
            fn visit_none<E>(self) -> std::result::Result<TopKeys, E> {
                Ok(TopKeys(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses recipe text; `origin` (the file) prefixes every error message.
pub(super) fn parse(text: &str, origin: Option<&Path>) -> Result<Recipe> {
    let err = |msg: String| match origin {
        Some(p) => Error::Config(format!("{}: {msg}", p.display())),
        None => Error::Config(msg),
    };
    let keys = serde_saphyr::from_str_with_options::<TopKeys>(text, options()).map_err(|e| {
        let msg = e.without_snippet().to_string();
        err(format!(
            "not a recipe (a YAML mapping of keys): {}",
            msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        ))
    })?;
    let unknown: Vec<&str> = keys
        .0
        .iter()
        .map(String::as_str)
        .filter(|k| !Recipe::KEYS.contains(k))
        .collect();
    match unknown.as_slice() {
        [] => {}
        [k] => return Err(err(format!("unknown key '{k}'"))),
        ks => return Err(err(format!("unknown keys '{}'", ks.join("', '")))),
    }
    if keys.0.is_empty() {
        return Ok(Recipe::default());
    }
    serde_saphyr::from_str_with_options::<Recipe>(text, options()).map_err(|e| {
        let msg = e
            .without_snippet()
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        let line = e.location().map(|l| l.line() as usize);
        match line.and_then(|l| key_at_line(text, l)) {
            Some((key, value)) => err(format!("key '{key}': invalid value {value}: {msg}")),
            None => err(msg),
        }
    })
}

/// The top-level key whose value spans 1-based `line`, and that value's source text.
fn key_at_line(text: &str, line: usize) -> Option<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let last = line.min(lines.len());
    let start = (0..last).rev().find(|&i| top_key(lines[i]).is_some())?;
    let (key, rest) = top_key(lines[start])?;
    let mut value = strip_comment(rest).trim().to_string();
    if value.is_empty() {
        // Block value: the indented lines below the key.
        let below = lines[start + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.starts_with([' ', '\t', '-']))
            .map(|l| strip_comment(l).trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>();
        value = if below.iter().all(|l| l.starts_with('-')) {
            let items: Vec<&str> = below.iter().map(|l| l[1..].trim()).collect();
            format!("[{}]", items.join(", "))
        } else {
            below.join(" ")
        };
    }
    if !(value.starts_with(['"', '\'', '[', '{'])) {
        value = format!("'{value}'");
    }
    Some((key.to_string(), value))
}

/// `Some((key, rest))` if `line` starts a top-level `key: ...` entry.
fn top_key(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    let key = key.trim_end();
    let plain = !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let quoted = key.len() >= 2
        && ((key.starts_with('"') && key.ends_with('"'))
            || (key.starts_with('\'') && key.ends_with('\'')));
    if plain {
        Some((key, rest))
    } else if quoted {
        Some((&key[1..key.len() - 1], rest))
    } else {
        None
    }
}

/// `s` without a trailing `# comment` (a `#` preceded by whitespace, outside quotes).
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev_space => return &s[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_of_a_line() {
        let text = "# c\nlr: abc  # note\nscale:\n  - 1\n  - x\nmodel: m\n";
        assert_eq!(key_at_line(text, 2), Some(("lr".into(), "'abc'".into())));
        assert_eq!(
            key_at_line(text, 5),
            Some(("scale".into(), "[1, x]".into()))
        );
        assert_eq!(key_at_line(text, 1), None);
    }

    #[test]
    fn comments_inside_quotes_are_kept() {
        assert_eq!(strip_comment(" \"a # b\" # c"), " \"a # b\" ");
        assert_eq!(strip_comment("x#y"), "x#y");
    }
}
