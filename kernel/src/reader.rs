//! The reader: SX text to values (SX.md §1).
//!
//! It is iterative (an explicit stack of open forms), so no input can overflow the Rust
//! stack; nesting deeper than a limit is a read error. Every error carries `line:col`, and an
//! unclosed form names where it opened. The reader never evaluates anything.
//!
//! Two modes: [`Mode::Data`] (`read-string`, wire text) turns `{...}` into dicts; [`Mode::Code`]
//! keeps a dict literal as `(#dict k v ...)` so its entries can be evaluated in written order,
//! and records source positions and bracket lists in a [`SourceMap`] for the expander.

use std::collections::HashMap;
use std::fmt;

use crate::value::{Dict, Key, List, Pos, Symbol, Value};

pub const DEFAULT_MAX_DEPTH: usize = 10_000;

/// The head of a dict literal read in code mode. `#` cannot start a symbol, so no reader
/// produces this symbol from text.
pub fn dict_literal_head() -> Symbol {
    Symbol::new("#dict")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Code,
    Data,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReadError {
    pub message: String,
    pub pos: Pos,
    /// The text ended inside a form or string: more input could complete it (the REPL's cue).
    pub incomplete: bool,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Where each list read in code mode started, and whether it was written `[...]`.
/// Keyed by list node identity, so positions survive macros that reuse their input.
#[derive(Default)]
pub struct SourceMap {
    lists: HashMap<(usize, u32), (Pos, bool)>,
    /// Lists recorded after reading (macro expansions) are kept alive here, so no other
    /// list can take their address and inherit their entry.
    kept: Vec<List>,
}

impl SourceMap {
    pub fn pos(&self, list: &List) -> Option<Pos> {
        list.node_id()
            .and_then(|id| self.lists.get(&id))
            .map(|(p, _)| *p)
    }

    pub fn is_bracket(&self, list: &List) -> bool {
        list.node_id()
            .and_then(|id| self.lists.get(&id))
            .is_some_and(|(_, b)| *b)
    }

    fn record_read(&mut self, list: &List, pos: Pos, bracket: bool) {
        if let Some(id) = list.node_id() {
            self.lists.insert(id, (pos, bracket));
        }
    }

    /// Gives a list made by a macro the position of the call that made it.
    pub fn record(&mut self, list: &List, pos: Pos) {
        if let Some(id) = list.node_id() {
            self.lists.insert(id, (pos, false));
            self.kept.push(list.clone());
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Delim {
    Paren,
    Bracket,
    Brace,
}

impl Delim {
    fn close(self) -> char {
        match self {
            Delim::Paren => ')',
            Delim::Bracket => ']',
            Delim::Brace => '}',
        }
    }
    fn open(self) -> char {
        match self {
            Delim::Paren => '(',
            Delim::Bracket => '[',
            Delim::Brace => '{',
        }
    }
}

enum Open {
    Seq {
        delim: Delim,
        pos: Pos,
        items: Vec<Value>,
    },
    /// `'x` and friends: wraps the next datum.
    Prefix { head: &'static str, pos: Pos },
    /// `#;`: drops the next datum.
    Discard { pos: Pos },
}

pub fn is_symbol_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '!' | '$'
                | '%'
                | '&'
                | '*'
                | '+'
                | '-'
                | '.'
                | '/'
                | ':'
                | '<'
                | '='
                | '>'
                | '?'
                | '@'
                | '^'
                | '_'
                | '~'
        )
}

fn is_delimiter(c: char) -> bool {
    matches!(
        c,
        '(' | ')' | '[' | ']' | '{' | '}' | '"' | ';' | '\'' | '`' | ','
    ) || c.is_whitespace()
}

struct Reader<'a> {
    src: &'a str,
    at: usize,
    line: u32,
    col: u32,
    mode: Mode,
    sources: SourceMap,
}

/// Reads every datum in `src`.
pub fn read_all(
    src: &str,
    mode: Mode,
    max_depth: usize,
) -> Result<(Vec<Value>, SourceMap), ReadError> {
    let mut reader = Reader {
        src,
        at: 0,
        line: 1,
        col: 1,
        mode,
        sources: SourceMap::default(),
    };
    let forms = reader.run(max_depth)?;
    Ok((forms, reader.sources))
}

/// Reads exactly one datum in data mode (`read-string`): empty input or trailing text is an
/// error.
pub fn read_one(src: &str) -> Result<Value, ReadError> {
    let (mut forms, _) = read_all(src, Mode::Data, DEFAULT_MAX_DEPTH)?;
    match forms.len() {
        1 => Ok(forms.pop().unwrap_or(Value::Nil)),
        0 => Err(ReadError {
            message: "no datum in input".into(),
            pos: Pos { line: 1, col: 1 },
            incomplete: true,
        }),
        _ => Err(ReadError {
            message: "text after the first datum".into(),
            pos: Pos { line: 1, col: 1 },
            incomplete: false,
        }),
    }
}

impl Reader<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.at..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err<T>(&self, pos: Pos, message: impl Into<String>) -> Result<T, ReadError> {
        Err(ReadError {
            message: message.into(),
            pos,
            incomplete: false,
        })
    }

    fn incomplete<T>(&self, pos: Pos, message: impl Into<String>) -> Result<T, ReadError> {
        Err(ReadError {
            message: message.into(),
            pos,
            incomplete: true,
        })
    }

    fn skip_trivia(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.bump();
            } else if c == ';' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn run(&mut self, max_depth: usize) -> Result<Vec<Value>, ReadError> {
        let mut out = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        loop {
            self.skip_trivia();
            let pos = self.pos();
            let Some(c) = self.peek() else {
                return match stack.last() {
                    None => Ok(out),
                    Some(Open::Seq { delim, pos, .. }) => self.incomplete(
                        *pos,
                        format!("unclosed '{}' (expected '{}')", delim.open(), delim.close()),
                    ),
                    Some(Open::Prefix { head, pos }) => {
                        self.incomplete(*pos, format!("expected a datum after {head}"))
                    }
                    Some(Open::Discard { pos }) => {
                        self.incomplete(*pos, "expected a datum after #;".to_string())
                    }
                };
            };
            let datum = match c {
                '(' | '[' | '{' => {
                    if stack.len() >= max_depth {
                        return self.err(pos, format!("nesting deeper than {max_depth}"));
                    }
                    self.bump();
                    let delim = match c {
                        '(' => Delim::Paren,
                        '[' => Delim::Bracket,
                        _ => Delim::Brace,
                    };
                    stack.push(Open::Seq {
                        delim,
                        pos,
                        items: Vec::new(),
                    });
                    continue;
                }
                ')' | ']' | '}' => {
                    self.bump();
                    match stack.pop() {
                        Some(Open::Seq {
                            delim,
                            pos: open,
                            items,
                        }) => {
                            if delim.close() != c {
                                return self.err(
                                    pos,
                                    format!(
                                        "'{c}' does not close '{}' opened at {open}",
                                        delim.open()
                                    ),
                                );
                            }
                            self.finish_seq(delim, open, items)?
                        }
                        Some(Open::Prefix { head, .. }) => {
                            return self.err(pos, format!("expected a datum after {head}"))
                        }
                        Some(Open::Discard { .. }) => {
                            return self.err(pos, "expected a datum after #;")
                        }
                        None => return self.err(pos, format!("unexpected '{c}'")),
                    }
                }
                '\'' | '`' | ',' => {
                    if stack.len() >= max_depth {
                        return self.err(pos, format!("nesting deeper than {max_depth}"));
                    }
                    self.bump();
                    let head = match c {
                        '\'' => "quote",
                        '`' => "quasiquote",
                        _ if self.peek() == Some('@') => {
                            self.bump();
                            "unquote-splicing"
                        }
                        _ => "unquote",
                    };
                    stack.push(Open::Prefix { head, pos });
                    continue;
                }
                '#' => {
                    if self.peek2() == Some(';') {
                        self.bump();
                        self.bump();
                        stack.push(Open::Discard { pos });
                        continue;
                    }
                    return self.err(pos, "unexpected '#' (only '#;' comments start with #)");
                }
                '"' => self.read_string()?,
                _ => self.read_atom()?,
            };
            // Hand the finished datum to whatever is waiting for it.
            let mut datum = datum;
            loop {
                match stack.last_mut() {
                    None => {
                        out.push(datum);
                        break;
                    }
                    Some(Open::Seq { items, .. }) => {
                        items.push(datum);
                        break;
                    }
                    Some(Open::Discard { .. }) => {
                        stack.pop();
                        break;
                    }
                    Some(Open::Prefix { head, pos }) => {
                        let (head, pos) = (*head, *pos);
                        stack.pop();
                        let list = List::from(vec![Value::sym(head), datum]);
                        self.sources.record_read(&list, pos, false);
                        datum = Value::List(list);
                    }
                }
            }
        }
    }

    fn finish_seq(
        &mut self,
        delim: Delim,
        open: Pos,
        items: Vec<Value>,
    ) -> Result<Value, ReadError> {
        if delim == Delim::Brace {
            if items.len() % 2 != 0 {
                return self.err(
                    open,
                    format!(
                        "dict literal needs an even number of forms, found {}",
                        items.len()
                    ),
                );
            }
            if self.mode == Mode::Data {
                let mut dict = Dict::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if k.is_function() {
                        return self.err(open, "a function cannot be a dict key");
                    }
                    dict.insert(Key(k), v);
                }
                return Ok(Value::Dict(dict));
            }
            let list = List::from_iter_with_tail(items, List::empty());
            let list = List::cons(Value::Symbol(dict_literal_head()), list);
            self.sources.record_read(&list, open, false);
            return Ok(Value::List(list));
        }
        let list = List::from(items);
        if self.mode == Mode::Code {
            self.sources
                .record_read(&list, open, delim == Delim::Bracket);
        }
        Ok(Value::List(list))
    }

    fn read_string(&mut self) -> Result<Value, ReadError> {
        let open = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            // Plain text up to the next quote, escape or newline goes in one piece.
            let rest = &self.src[self.at..];
            let plain = rest.find(['"', '\\', '\n']).unwrap_or(rest.len());
            if plain > 0 {
                s.push_str(&rest[..plain]);
                self.col += rest[..plain].chars().count() as u32;
                self.at += plain;
            }
            let here = self.pos();
            match self.bump() {
                None => return self.incomplete(open, "unclosed string"),
                Some('"') => return Ok(Value::str(&s)),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('u') => s.push(self.read_unicode_escape(here)?),
                    None => return self.incomplete(open, "unclosed string"),
                    Some(other) => {
                        return self.err(here, format!("unknown escape '\\{other}' in string"))
                    }
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn read_unicode_escape(&mut self, at: Pos) -> Result<char, ReadError> {
        if self.bump() != Some('{') {
            return self.err(at, "expected '{' after \\u (write \\u{HEX})");
        }
        let mut hex = String::new();
        loop {
            match self.bump() {
                Some('}') => break,
                Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                _ => return self.err(at, "malformed \\u{HEX} escape"),
            }
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .map_or_else(
                || self.err(at, format!("\\u{{{hex}}} is not a character")),
                Ok,
            )
    }

    fn read_atom(&mut self) -> Result<Value, ReadError> {
        let start = self.pos();
        let from = self.at;
        while let Some(c) = self.peek() {
            if is_delimiter(c) {
                break;
            }
            self.bump();
        }
        let token = &self.src[from..self.at];
        if token.is_empty() {
            let c = self.peek().unwrap_or(' ');
            return self.err(start, format!("unexpected character {c:?}"));
        }
        parse_atom(token).map_err(|message| ReadError {
            message,
            pos: start,
            incomplete: false,
        })
    }
}

/// `[+-]?digits(.digits)?([eE][+-]?digits)?`; `Ok(None)` when the token is no number at all.
fn parse_number(token: &str) -> Result<Option<Value>, String> {
    let b = token.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return Ok(None);
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    digits(&mut i);
    let mut is_float = false;
    let bad = || Err(format!("invalid number {token:?}"));
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return bad();
        }
        is_float = true;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return bad();
        }
        is_float = true;
    }
    if i != b.len() {
        return bad();
    }
    if is_float {
        token
            .parse::<f64>()
            .map(|f| Some(Value::Float(f)))
            .map_err(|_| format!("invalid number {token:?}"))
    } else {
        token
            .parse::<i64>()
            .map(|n| Some(Value::Int(n)))
            .map_err(|_| format!("integer literal {token} is outside the 64-bit range"))
    }
}

fn parse_atom(token: &str) -> Result<Value, String> {
    if let Some(n) = parse_number(token)? {
        return Ok(n);
    }
    match token {
        "nil" => return Ok(Value::Nil),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "+inf.0" => return Ok(Value::Float(f64::INFINITY)),
        "-inf.0" => return Ok(Value::Float(f64::NEG_INFINITY)),
        "+nan.0" => return Ok(Value::Float(f64::NAN)),
        _ => {}
    }
    if let Some(bad) = token.chars().find(|c| !is_symbol_char(*c)) {
        return Err(format!("unexpected character {bad:?} in {token:?}"));
    }
    if let Some(name) = token.strip_prefix(':') {
        if name.is_empty() {
            return Err("a keyword needs a name after ':'".into());
        }
        return Ok(Value::Keyword(Symbol::new(name)));
    }
    if token.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("invalid number {token:?}"));
    }
    Ok(Value::Symbol(Symbol::new(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        read_all(src, Mode::Code, DEFAULT_MAX_DEPTH)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_line_and_col() {
        assert_eq!(err("(a\n  (b"), "2:3: unclosed '(' (expected ')')");
        assert_eq!(err("\"abc"), "1:1: unclosed string");
        assert_eq!(err("(a]"), "1:3: ']' does not close '(' opened at 1:1");
        assert_eq!(err(")"), "1:1: unexpected ')'");
        assert_eq!(err("\"a\\q\""), "1:3: unknown escape '\\q' in string");
        assert_eq!(
            err("{1}"),
            "1:1: dict literal needs an even number of forms, found 1"
        );
        assert_eq!(
            err("99999999999999999999"),
            "1:1: integer literal 99999999999999999999 is outside the 64-bit range"
        );
        assert_eq!(err("'"), "1:1: expected a datum after quote");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = "(".repeat(100_000);
        assert_eq!(err(&src), "1:10001: nesting deeper than 10000");
        let quotes = "'".repeat(100_000) + "x";
        assert!(err(&quotes).contains("nesting deeper"));
    }

    #[test]
    fn datum_comments_and_brackets() {
        let (forms, map) = read_all("#;(a b) [x y] ; c\n 1.5e3", Mode::Code, 100).unwrap();
        assert_eq!(forms.len(), 2);
        let Value::List(l) = &forms[0] else {
            panic!("expected a list")
        };
        assert!(map.is_bracket(l));
        assert_eq!(forms[1], Value::Float(1500.0));
    }
}
