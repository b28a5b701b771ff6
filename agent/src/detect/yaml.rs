//! A YAML tree that remembers where every node came from.
//!
//! Rule errors must name a line and column even when the YAML is well-formed but the rule is not
//! (an unknown modifier on line 14). `serde_yaml_ng` drops positions once a document is parsed, so
//! rule files are read with `saphyr-parser`'s event stream and built into this small tree, each
//! node carrying its start position. Scalars are typed per the YAML 1.2 core schema (plain `null`,
//! `true`, `42`, `1.5`; anything quoted is a string).
//!
//! The builder is iterative and bounded (nesting depth, node count including alias expansion), so
//! no input can overflow the stack or blow up memory.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; Sigma rules need about five levels.
const MAX_DEPTH: usize = 64;
/// Most nodes accepted per file, counting the copies that aliases make.
const MAX_NODES: usize = 2_000_000;

/// A position in a source file; line and column are 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }

    /// The position `chars` characters to the right on the same line.
    pub fn shifted(self, chars: usize) -> Self {
        Self { line: self.line, column: self.column + chars }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// An error with the position it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub pos: Pos,
    pub msg: String,
}

impl Located {
    pub fn new(pos: Pos, msg: impl Into<String>) -> Self {
        Self { pos, msg: msg.into() }
    }
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    pub style: Style,
}

impl Node {
    /// A string scalar (only strings; see [`Node::scalar_text`] for numbers too).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Any scalar as text (`42` → "42", `true` → "true"); `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value under a string key of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// The key node of a string key (to point at the key rather than its value).
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k)
    }

    /// A short name of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// A string, or an error naming `what` at this node.
    pub fn expect_str(&self, what: &str) -> Result<&str, Located> {
        self.as_str().ok_or_else(|| Located::new(self.pos, format!("{what} must be a string, not {}", self.kind())))
    }

    /// A string or a list of strings (Sigma accepts both for `references`, `tags`, ...).
    pub fn string_list(&self, what: &str) -> Result<Vec<String>, Located> {
        match &self.value {
            Value::Null => Ok(Vec::new()),
            Value::Seq(items) => items
                .iter()
                .map(|n| n.scalar_text().ok_or_else(|| Located::new(n.pos, format!("{what} must list strings"))))
                .collect(),
            _ => self
                .scalar_text()
                .map(|s| vec![s])
                .ok_or_else(|| Located::new(self.pos, format!("{what} must be a string or a list of strings"))),
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos { line: span.start.line(), column: span.start.col() + 1 }
}

/// Types a scalar per the YAML 1.2 core schema.
fn scalar(text: &str, style: ScalarStyle) -> (Value, Style) {
    if style != ScalarStyle::Plain {
        return (Value::Str(text.to_owned()), Style::Quoted);
    }
    let v = match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => parse_number(text).unwrap_or_else(|| Value::Str(text.to_owned())),
    };
    (v, Style::Plain)
}

fn parse_number(t: &str) -> Option<Value> {
    let first = t.as_bytes().first()?;
    if !(first.is_ascii_digit() || *first == b'-' || *first == b'+' || *first == b'.') {
        return None;
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Value::Int);
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(Value::Int);
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Out-of-range integers stay strings rather than silently losing precision.
        return t.parse::<i64>().ok().map(Value::Int);
    }
    let float_like =
        digits.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
            && digits.bytes().any(|b| b.is_ascii_digit());
    if float_like {
        return t.parse::<f64>().ok().map(Value::Float);
    }
    match digits {
        ".inf" | ".Inf" | ".INF" => {
            Some(Value::Float(if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }))
        }
        ".nan" | ".NaN" | ".NAN" => Some(Value::Float(f64::NAN)),
        _ => None,
    }
}

enum Frame {
    Seq { items: Vec<Node>, pos: Pos, anchor: usize },
    Map { pairs: Vec<(Node, Node)>, key: Option<Node>, seen: HashSet<String>, pos: Pos, anchor: usize },
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(pairs) => 1 + pairs.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    nodes: usize,
}

impl Builder {
    /// Places a finished node in its parent (or finishes a document).
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), Located> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { pairs, key, seen, .. }) => match key.take() {
                None => {
                    if let Some(k) = node.scalar_text() {
                        if !seen.insert(k.clone()) {
                            return Err(Located::new(node.pos, format!("duplicate key `{k}`")));
                        }
                    }
                    *key = Some(node);
                }
                Some(k) => pairs.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame) -> Result<(), Located> {
        let pos = match &frame {
            Frame::Seq { pos, .. } | Frame::Map { pos, .. } => *pos,
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(Located::new(pos, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.bump(pos, 1)?;
        self.stack.push(frame);
        Ok(())
    }

    fn bump(&mut self, pos: Pos, n: usize) -> Result<(), Located> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(Located::new(pos, format!("more than {MAX_NODES} YAML nodes (alias expansion?)")));
        }
        Ok(())
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), Located> {
        let pos = pos_of(&span);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                self.bump(pos, 1)?;
                let (value, style) = scalar(&text, style);
                self.push(Node { value, pos, style }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq { items: Vec::new(), pos, anchor })?,
            Event::MappingStart(anchor, _) => {
                self.open(Frame::Map { pairs: Vec::new(), key: None, seen: HashSet::new(), pos, anchor })?
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, pos, anchor }) => {
                    self.push(Node { value: Value::Seq(items), pos, style: Style::Plain }, anchor)?
                }
                Some(Frame::Map { pairs, pos, anchor, .. }) => {
                    self.push(Node { value: Value::Map(pairs), pos, style: Style::Plain }, anchor)?
                }
                None => return Err(Located::new(pos, "unbalanced collection end")),
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| Located::new(pos, "unknown alias"))?;
                self.bump(pos, count_nodes(&node))?;
                self.push(Node { pos, ..node }, 0)?;
            }
            Event::DocumentStart(_) => self.anchors.clear(),
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(())
    }
}

/// Parses every document of a YAML stream. An empty stream yields no documents.
pub fn parse(src: &str) -> Result<Vec<Node>, Located> {
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder { stack: Vec::new(), anchors: HashMap::new(), docs: Vec::new(), nodes: 0 };
    while let Some(item) = parser.next_event() {
        match item {
            Ok((ev, span)) => b.event(ev, span)?,
            Err(e) => {
                let m = e.marker();
                return Err(Located::new(Pos::new(m.line(), m.col() + 1), e.info().to_owned()));
            }
        }
    }
    Ok(b.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let docs = parse("a: 1\nb:\n  - 'x'\n  - null\n  - true\n  - 2.5\nc: ~\n").unwrap();
        let d = &docs[0];
        assert_eq!(d.get("a").unwrap().value, Value::Int(1));
        let b = d.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[0].as_str(), Some("x"));
        assert_eq!(b[0].pos, Pos::new(3, 5));
        assert!(b[1].is_null());
        assert_eq!(b[2].value, Value::Bool(true));
        assert_eq!(b[3].value, Value::Float(2.5));
        assert!(d.get("c").unwrap().is_null());
        assert_eq!(d.key_node("c").unwrap().pos, Pos::new(7, 1));
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let d = &parse("a: '42'\nb: \"true\"\nc: 0x10\nd: 99999999999999999999\n").unwrap()[0];
        assert_eq!(d.get("a").unwrap().as_str(), Some("42"));
        assert_eq!(d.get("b").unwrap().as_str(), Some("true"));
        assert_eq!(d.get("c").unwrap().value, Value::Int(16));
        assert_eq!(d.get("d").unwrap().as_str(), Some("99999999999999999999"));
    }

    #[test]
    fn multiple_documents() {
        let docs = parse("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b").unwrap().pos.line, 3);
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        let e = parse("a: b\n c: d\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos::new(3, 1));
    }

    #[test]
    fn aliases_expand_within_budget() {
        let d = &parse("a: &x [1, 2]\nb: *x\n").unwrap()[0];
        assert_eq!(d.get("b").unwrap().as_seq().unwrap().len(), 2);
        // Billion laughs: each level doubles... ten times over.
        let mut s = String::from("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n");
        for i in 1..12 {
            s.push_str(&format!(
                "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse(&s).is_err());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let s = "[".repeat(10_000);
        assert!(parse(&s).is_err());
    }
}
