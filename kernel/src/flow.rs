//! Durable flows as data (docs/apps.md, "Flows"). `defflow` hands the host a flow's nodes as
//! plain SX data; this module reads them into a program of flat instructions, decides what
//! runs next from an instance's position, and lays the flow out for drawing. It does no IO
//! and runs no SX: the host evaluates the functions a node names, records the result, and
//! tells the flow what happened (`Flow::advance`).
//!
//! Nodes (each has a name, unique in its flow; the functions are SX expressions evaluated
//! by the host in the app's image and called with a context dict):
//!
//! - `(effect NAME FN [:retry N] [:backoff-ms MS])` — calls FN; its result is recorded.
//! - `(branch NAME TEST :then (NODE...) [:else (NODE...)])` — TEST's truthiness picks a side.
//! - `(each NAME ITEMS NODE...)` — ITEMS gives a list; the nodes run once per item.
//! - `(suspend NAME [:timeout-ms MS] [:on-timeout (NODE...)])` — waits for a resume (its
//!   payload is the step's result); a timeout runs :on-timeout, or simply continues.
//! - `(sleep NAME :for-ms MS)` or `(sleep NAME :until FN)` — FN gives a time in UTC ms.
//!
//! `:retry` and `:backoff-ms` are accepted by every node that calls a function.

use crate::error::ErrorValue;
use crate::printer::repr;
use crate::value::{kw_dict, List};
use crate::Value;

/// `flow-error`: a flow definition that cannot run.
pub fn flow_error(message: impl Into<String>) -> Value {
    ErrorValue::value("flow-error", message, vec![])
}

/// How often a failing function is tried, and the first wait between tries (doubling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_ms: i64,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 3,
            backoff_ms: 1000,
        }
    }
}

impl Retry {
    /// The wait before try `attempt + 1` (after `attempt` failures): doubling, at most an hour.
    pub fn delay_ms(&self, attempt: u32) -> i64 {
        let factor = 1i64 << attempt.saturating_sub(1).min(20);
        self.backoff_ms.saturating_mul(factor).min(3_600_000)
    }
}

#[derive(Clone, Debug)]
pub enum Wait {
    For(i64),
    Until(Value),
}

/// One instruction of a flow's program. Control instructions (`Jump`, `Next`) are taken by
/// `Flow::action` itself; the others are where an instance can stand.
#[derive(Clone, Debug)]
pub enum Node {
    Effect {
        name: String,
        run: Value,
        retry: Retry,
    },
    /// Falls through into the `:then` nodes; false goes to `otherwise`.
    Branch {
        name: String,
        test: Value,
        retry: Retry,
        otherwise: usize,
    },
    /// Starts a loop over ITEMS' list; an empty list goes to `end`.
    Each {
        name: String,
        items: Value,
        retry: Retry,
        end: usize,
    },
    /// Closes the loop that starts at `each`: the next item, or past the loop.
    Next {
        each: usize,
    },
    Suspend {
        name: String,
        timeout_ms: Option<i64>,
        on_timeout: Option<usize>,
    },
    Sleep {
        name: String,
        wait: Wait,
        retry: Retry,
    },
    Jump {
        to: usize,
    },
    End,
}

impl Node {
    pub fn name(&self) -> Option<&str> {
        match self {
            Node::Effect { name, .. }
            | Node::Branch { name, .. }
            | Node::Each { name, .. }
            | Node::Suspend { name, .. }
            | Node::Sleep { name, .. } => Some(name),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Node::Effect { .. } => "effect",
            Node::Branch { .. } => "branch",
            Node::Each { .. } => "each",
            Node::Next { .. } => "next",
            Node::Suspend { .. } => "suspend",
            Node::Sleep { .. } => "sleep",
            Node::Jump { .. } => "jump",
            Node::End => "end",
        }
    }
}

/// A box of the drawing: a node at a grid cell (column, row).
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub pc: usize,
    pub name: String,
    pub kind: &'static str,
    pub col: usize,
    pub row: usize,
}

/// An arrow of the drawing, between two nodes' `pc`s.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: &'static str,
}

/// A flow read from its definition: its program, its drawing, and its version (a hash of
/// the definition's text, so an edited flow is a new version and instances keep theirs).
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub version: String,
    pub source: Value,
    pub nodes: Vec<Node>,
    pub places: Vec<Place>,
    pub edges: Vec<Edge>,
}

/// Where an instance stands: the node, and the loops it is inside (innermost last).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    pub pc: usize,
    pub loops: Vec<Loop>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loop {
    pub each: usize,
    pub items: Value,
    pub index: usize,
}

/// What a flow needs next at a position.
#[derive(Debug)]
pub enum Action<'f> {
    /// Call a function (an effect, a branch's test, an each's items).
    Call {
        node: &'f Node,
        expr: &'f Value,
        retry: Retry,
    },
    /// Sleep: for a duration, or until the time a function gives.
    Sleep {
        node: &'f Node,
        wait: &'f Wait,
    },
    Suspend {
        node: &'f Node,
        timeout_ms: Option<i64>,
    },
    Done,
}

/// What happened at the node an instance stands on.
#[derive(Debug)]
pub enum Happened {
    /// A function's result (effect, test, items) or a resume's payload.
    Value(Value),
    /// A sleep ended, or a suspend timed out.
    Elapsed,
}

impl Flow {
    /// Reads a flow from its name and the list of its nodes.
    pub fn read(name: &str, nodes: &Value) -> Result<Flow, Value> {
        let Value::List(items) = nodes else {
            return Err(flow_error(format!(
                "flow {name}: the nodes must be a list, not {}",
                nodes.type_name()
            )));
        };
        let mut builder = Builder {
            flow: name,
            nodes: Vec::new(),
            places: Vec::new(),
            edges: Vec::new(),
            names: Vec::new(),
        };
        let exits = builder.sequence(items, 0, 0, Vec::new())?.0;
        let end = builder.emit(Node::End);
        builder.join(&exits, end);
        builder.place(end, "end", "end", 0, builder.depth());
        let text = repr(nodes);
        Ok(Flow {
            name: name.to_string(),
            version: format!("{:016x}", fnv1a(name.as_bytes(), text.as_bytes())),
            source: nodes.clone(),
            nodes: builder.nodes,
            places: builder.places,
            edges: builder.edges,
        })
    }

    /// The node an instance at `pos` stands on (for display).
    pub fn node(&self, pos: &Position) -> Option<&Node> {
        self.nodes.get(pos.pc)
    }

    /// The item of the innermost loop, if any (the context's `:item`).
    pub fn item(pos: &Position) -> Value {
        match pos.loops.last() {
            Some(Loop {
                items: Value::List(items),
                index,
                ..
            }) => items.iter().nth(*index).cloned().unwrap_or(Value::Nil),
            _ => Value::Nil,
        }
    }

    /// Takes control instructions at `pos` and says what the flow needs there.
    pub fn action(&self, pos: &mut Position) -> Result<Action<'_>, Value> {
        // Each control step moves forward or closes a loop, so this ends; the bound guards
        // against a corrupt position.
        for _ in 0..=self.nodes.len() * 2 + 2 {
            let node = self
                .nodes
                .get(pos.pc)
                .ok_or_else(|| flow_error(format!("flow {}: no node at {}", self.name, pos.pc)))?;
            match node {
                Node::Jump { to } => pos.pc = *to,
                Node::Next { each } => {
                    let Some(top) = pos.loops.last_mut() else {
                        return Err(flow_error(format!(
                            "flow {}: a loop's end outside its loop",
                            self.name
                        )));
                    };
                    top.index += 1;
                    if top.index < list_len(&top.items) {
                        pos.pc = each + 1;
                    } else {
                        pos.loops.pop();
                        pos.pc += 1;
                    }
                }
                Node::Effect { run, retry, .. } => {
                    return Ok(Action::Call {
                        node,
                        expr: run,
                        retry: *retry,
                    })
                }
                Node::Branch { test, retry, .. } => {
                    return Ok(Action::Call {
                        node,
                        expr: test,
                        retry: *retry,
                    })
                }
                Node::Each { items, retry, .. } => {
                    return Ok(Action::Call {
                        node,
                        expr: items,
                        retry: *retry,
                    })
                }
                Node::Sleep { wait, .. } => return Ok(Action::Sleep { node, wait }),
                Node::Suspend { timeout_ms, .. } => {
                    return Ok(Action::Suspend {
                        node,
                        timeout_ms: *timeout_ms,
                    })
                }
                Node::End => return Ok(Action::Done),
            }
        }
        Err(flow_error(format!("flow {}: control loops", self.name)))
    }

    /// Moves `pos` past the node it stands on, given what happened there.
    pub fn advance(&self, pos: &mut Position, happened: Happened) -> Result<(), Value> {
        let node = self
            .nodes
            .get(pos.pc)
            .ok_or_else(|| flow_error(format!("flow {}: no node at {}", self.name, pos.pc)))?;
        match (node, happened) {
            (Node::Branch { otherwise, .. }, Happened::Value(v)) => {
                pos.pc = if v.is_truthy() {
                    pos.pc + 1
                } else {
                    *otherwise
                };
            }
            (Node::Each { end, name, .. }, Happened::Value(items)) => {
                let items = match items {
                    Value::Nil => Value::List(List::empty()),
                    list @ Value::List(_) => list,
                    other => {
                        return Err(flow_error(format!(
                            "each {name}: the items must be a list, not {}",
                            other.type_name()
                        )))
                    }
                };
                if list_len(&items) == 0 {
                    pos.pc = *end;
                } else {
                    pos.loops.push(Loop {
                        each: pos.pc,
                        items,
                        index: 0,
                    });
                    pos.pc += 1;
                }
            }
            (
                Node::Suspend {
                    on_timeout: Some(target),
                    ..
                },
                Happened::Elapsed,
            ) => pos.pc = *target,
            (Node::End, _) => {}
            _ => pos.pc += 1,
        }
        Ok(())
    }

    /// The key an effect at `pos` gets: the same for every try of that node in that loop
    /// round, so the effect can recognise a repeat.
    pub fn idempotency_key(instance: &str, pos: &Position) -> String {
        let mut key = format!("{instance}/{}", pos.pc);
        for l in &pos.loops {
            key.push_str(&format!(".{}", l.index));
        }
        key
    }

    /// The drawing as data for SX: `{:nodes ({:pc :name :kind :col :row}...)
    /// :edges ({:from :to :label}...) :cols :rows}`.
    pub fn graph(&self) -> Value {
        let nodes = self
            .places
            .iter()
            .map(|p| {
                kw_dict([
                    ("pc", Value::Int(p.pc as i64)),
                    ("name", Value::str(&p.name)),
                    ("kind", Value::str(p.kind)),
                    ("col", Value::Int(p.col as i64)),
                    ("row", Value::Int(p.row as i64)),
                ])
            })
            .collect();
        let edges = self
            .edges
            .iter()
            .map(|e| {
                kw_dict([
                    ("from", Value::Int(e.from as i64)),
                    ("to", Value::Int(e.to as i64)),
                    ("label", Value::str(e.label)),
                ])
            })
            .collect();
        let cols = self.places.iter().map(|p| p.col + 1).max().unwrap_or(1);
        let rows = self.places.iter().map(|p| p.row + 1).max().unwrap_or(1);
        kw_dict([
            ("nodes", Value::list(nodes)),
            ("edges", Value::list(edges)),
            ("cols", Value::Int(cols as i64)),
            ("rows", Value::Int(rows as i64)),
        ])
    }
}

impl Position {
    /// As stored with an instance: `{:pc N :loops ({:each N :items (...) :index N}...)}`.
    pub fn to_value(&self) -> Value {
        let loops = self
            .loops
            .iter()
            .map(|l| {
                kw_dict([
                    ("each", Value::Int(l.each as i64)),
                    ("items", l.items.clone()),
                    ("index", Value::Int(l.index as i64)),
                ])
            })
            .collect();
        kw_dict([
            ("pc", Value::Int(self.pc as i64)),
            ("loops", Value::list(loops)),
        ])
    }

    pub fn from_value(v: &Value) -> Result<Position, Value> {
        let bad = || flow_error("a stored flow position is damaged");
        let Value::Dict(d) = v else { return Err(bad()) };
        let int = |d: &crate::value::Dict, k: &str| match crate::value::kw_get(d, k) {
            Some(Value::Int(n)) if *n >= 0 => Ok(*n as usize),
            _ => Err(bad()),
        };
        let mut loops = Vec::new();
        if let Some(Value::List(ls)) = crate::value::kw_get(d, "loops") {
            for l in ls.iter() {
                let Value::Dict(l) = l else { return Err(bad()) };
                loops.push(Loop {
                    each: int(l, "each")?,
                    items: crate::value::kw_get(l, "items").cloned().ok_or_else(bad)?,
                    index: int(l, "index")?,
                });
            }
        }
        Ok(Position {
            pc: int(d, "pc")?,
            loops,
        })
    }
}

fn list_len(v: &Value) -> usize {
    match v {
        Value::List(l) => l.len(),
        _ => 0,
    }
}

/// FNV-1a over the name and the text: a stable version id (not a security hash).
fn fnv1a(name: &[u8], text: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.iter().chain(b"\0").chain(text) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Reads node forms into instructions and the drawing at the same time.
struct Builder<'a> {
    flow: &'a str,
    nodes: Vec<Node>,
    places: Vec<Place>,
    edges: Vec<Edge>,
    names: Vec<String>,
}

/// Arrows leaving a part of the drawing: (from node, label), joined to whatever comes next.
type Exits = Vec<(usize, &'static str)>;

/// A node form's name, positional arguments and `:key value` options.
struct Form<'v> {
    kind: String,
    name: String,
    args: Vec<&'v Value>,
    options: Vec<(String, &'v Value)>,
}

impl Builder<'_> {
    fn error(&self, message: impl std::fmt::Display) -> Value {
        flow_error(format!("flow {}: {message}", self.flow))
    }

    fn emit(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn place(&mut self, pc: usize, name: &str, kind: &'static str, col: usize, row: usize) {
        self.places.push(Place {
            pc,
            name: name.to_string(),
            kind,
            col,
            row,
        });
    }

    fn depth(&self) -> usize {
        self.places.iter().map(|p| p.row + 1).max().unwrap_or(0)
    }

    /// Arrows from every exit of what came before to `to`.
    fn join(&mut self, exits: &[(usize, &'static str)], to: usize) {
        for (from, label) in exits {
            self.edges.push(Edge {
                from: *from,
                to,
                label,
            });
        }
    }

    /// Reads a sequence of node forms placed from (col, row) down; `exits` are the nodes
    /// (and arrow labels) that lead into its first node. Returns the sequence's exits and
    /// its width in columns.
    fn sequence(
        &mut self,
        forms: &List,
        col: usize,
        row: usize,
        mut exits: Exits,
    ) -> Result<(Exits, usize), Value> {
        let mut row = row;
        let mut width = 1;
        for form in forms.iter() {
            let (next, w, rows) = self.node(form, col, row, exits)?;
            exits = next;
            width = width.max(w);
            row += rows;
        }
        Ok((exits, width))
    }

    fn form<'v>(&mut self, form: &'v Value) -> Result<Form<'v>, Value> {
        let Value::List(items) = form else {
            return Err(self.error(format!(
                "a node must be a list like (effect name fn), not {}",
                repr(form)
            )));
        };
        let mut it = items.iter();
        let kind = match it.next() {
            Some(Value::Symbol(s)) => s.name().to_string(),
            _ => return Err(self.error(format!("a node starts with its kind: {}", repr(form)))),
        };
        let name = match it.next() {
            Some(Value::Symbol(s)) => s.name().to_string(),
            Some(Value::Str(s)) => s.to_string(),
            _ => {
                return Err(self.error(format!(
                    "a {kind} node needs a name after its kind: {}",
                    repr(form)
                )))
            }
        };
        if self.names.contains(&name) {
            return Err(self.error(format!("two nodes are named {name}")));
        }
        self.names.push(name.clone());
        let mut args = Vec::new();
        let mut options = Vec::new();
        while let Some(item) = it.next() {
            if let Value::Keyword(k) = item {
                let Some(value) = it.next() else {
                    return Err(self.error(format!("{kind} {name}: :{} needs a value", k.name())));
                };
                options.push((k.name().to_string(), value));
            } else if options.is_empty() {
                args.push(item);
            } else {
                return Err(self.error(format!("{kind} {name}: {} after the options", repr(item))));
            }
        }
        Ok(Form {
            kind,
            name,
            args,
            options,
        })
    }

    /// Reads one node form; returns its exits, its width and its height in the drawing.
    fn node(
        &mut self,
        form: &Value,
        col: usize,
        row: usize,
        exits: Exits,
    ) -> Result<(Exits, usize, usize), Value> {
        let f = self.form(form)?;
        let known: &[&str] = match f.kind.as_str() {
            "effect" | "each" => &["retry", "backoff-ms"],
            "branch" => &["then", "else", "retry", "backoff-ms"],
            "suspend" => &["timeout-ms", "on-timeout"],
            "sleep" => &["for-ms", "until", "retry", "backoff-ms"],
            other => {
                return Err(self.error(format!(
                    "unknown node kind {other} (effect, branch, each, suspend, sleep)"
                )))
            }
        };
        if let Some((k, _)) = f.options.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(self.error(format!("{} {}: unknown option :{k}", f.kind, f.name)));
        }
        let retry = self.retry(&f)?;
        let pc = self.nodes.len();
        let kind = match f.kind.as_str() {
            "effect" => "effect",
            "branch" => "branch",
            "each" => "each",
            "suspend" => "suspend",
            _ => "sleep",
        };
        self.place(pc, &f.name, kind, col, row);
        self.join(&exits, pc);
        match kind {
            "effect" => {
                let run = self.one_arg(&f)?;
                self.emit(Node::Effect {
                    name: f.name,
                    run,
                    retry,
                });
                Ok((vec![(pc, "")], 1, 1))
            }
            "branch" => {
                let test = self.one_arg(&f)?;
                let then = self.node_list(&f, "then")?;
                let otherwise = self.node_list(&f, "else")?;
                self.emit(Node::Branch {
                    name: f.name.clone(),
                    test,
                    retry,
                    otherwise: usize::MAX,
                });
                let (mut out, w1) = self.sequence(&then, col, row + 1, vec![(pc, "yes")])?;
                let jump = self.emit(Node::Jump { to: usize::MAX });
                let else_pc = self.nodes.len();
                if let Node::Branch { otherwise, .. } = &mut self.nodes[pc] {
                    *otherwise = else_pc;
                }
                let (out2, w2) = self.sequence(&otherwise, col + w1, row + 1, vec![(pc, "no")])?;
                let after = self.nodes.len();
                if let Node::Jump { to } = &mut self.nodes[jump] {
                    *to = after;
                }
                out.extend(out2);
                let height = self.rows_below(row) + 1;
                Ok((out, w1 + w2, height))
            }
            "each" => {
                let Value::List(body) = self.one_arg_rest(&f)? else {
                    unreachable!("one_arg_rest returns a list")
                };
                let items = f.args[0].clone();
                self.emit(Node::Each {
                    name: f.name.clone(),
                    items,
                    retry,
                    end: usize::MAX,
                });
                let (body_exits, w) = self.sequence(&body, col + 1, row + 1, vec![(pc, "item")])?;
                // The loop's last node leads back to the each.
                for (from, _) in &body_exits {
                    self.edges.push(Edge {
                        from: *from,
                        to: pc,
                        label: "next",
                    });
                }
                self.emit(Node::Next { each: pc });
                let end = self.nodes.len();
                if let Node::Each { end: e, .. } = &mut self.nodes[pc] {
                    *e = end;
                }
                let height = self.rows_below(row) + 1;
                Ok((vec![(pc, "done")], w + 1, height))
            }
            "suspend" => {
                if !f.args.is_empty() {
                    return Err(self.error(format!("suspend {}: takes only options", f.name)));
                }
                let timeout_ms = self.option_ms(&f, "timeout-ms")?;
                let on_timeout = self.node_list(&f, "on-timeout")?;
                if !on_timeout.is_empty() && timeout_ms.is_none() {
                    return Err(
                        self.error(format!("suspend {}: :on-timeout needs :timeout-ms", f.name))
                    );
                }
                self.emit(Node::Suspend {
                    name: f.name.clone(),
                    timeout_ms,
                    on_timeout: None,
                });
                if on_timeout.is_empty() {
                    let mut out = vec![(pc, "resumed")];
                    if timeout_ms.is_some() {
                        out.push((pc, "timeout"));
                    }
                    return Ok((out, 1, 1));
                }
                // The timeout branch sits beside the resume path; resuming jumps past it.
                let jump = self.emit(Node::Jump { to: usize::MAX });
                let target = self.nodes.len();
                if let Node::Suspend { on_timeout: t, .. } = &mut self.nodes[pc] {
                    *t = Some(target);
                }
                let (mut out, w) =
                    self.sequence(&on_timeout, col + 1, row + 1, vec![(pc, "timeout")])?;
                let after = self.nodes.len();
                if let Node::Jump { to } = &mut self.nodes[jump] {
                    *to = after;
                }
                out.push((pc, "resumed"));
                let height = self.rows_below(row) + 1;
                Ok((out, w + 1, height))
            }
            _ => {
                if !f.args.is_empty() {
                    return Err(self.error(format!("sleep {}: takes only options", f.name)));
                }
                let wait = match (self.option_ms(&f, "for-ms")?, option(&f, "until")) {
                    (Some(ms), None) => Wait::For(ms),
                    (None, Some(expr)) => Wait::Until(expr.clone()),
                    _ => {
                        return Err(
                            self.error(format!("sleep {}: give one of :for-ms or :until", f.name))
                        )
                    }
                };
                self.emit(Node::Sleep {
                    name: f.name,
                    wait,
                    retry,
                });
                Ok((vec![(pc, "")], 1, 1))
            }
        }
    }

    /// Rows used below `row` by the places made so far (a compound node's height).
    fn rows_below(&self, row: usize) -> usize {
        self.places
            .iter()
            .filter(|p| p.row > row)
            .map(|p| p.row - row)
            .max()
            .unwrap_or(0)
    }

    fn one_arg(&self, f: &Form) -> Result<Value, Value> {
        match f.args.as_slice() {
            [expr] => Ok((*expr).clone()),
            _ => Err(self.error(format!(
                "{} {}: needs exactly one function after its name",
                f.kind, f.name
            ))),
        }
    }

    /// `each`: the items function, then the body nodes (as a list).
    fn one_arg_rest(&self, f: &Form) -> Result<Value, Value> {
        if f.args.len() < 2 {
            return Err(self.error(format!(
                "each {}: needs an items function and at least one node",
                f.name
            )));
        }
        Ok(Value::list(
            f.args[1..].iter().map(|v| (*v).clone()).collect(),
        ))
    }

    fn node_list(&self, f: &Form, key: &str) -> Result<List, Value> {
        match option(f, key) {
            None | Some(Value::Nil) => Ok(List::empty()),
            Some(Value::List(l)) => Ok(l.clone()),
            Some(other) => Err(self.error(format!(
                "{} {}: :{key} must be a list of nodes, not {}",
                f.kind,
                f.name,
                repr(other)
            ))),
        }
    }

    fn option_ms(&self, f: &Form, key: &str) -> Result<Option<i64>, Value> {
        match option(f, key) {
            None => Ok(None),
            Some(Value::Int(n)) if *n >= 0 => Ok(Some(*n)),
            Some(other) => Err(self.error(format!(
                "{} {}: :{key} must be a whole number of milliseconds, not {}",
                f.kind,
                f.name,
                repr(other)
            ))),
        }
    }

    fn retry(&self, f: &Form) -> Result<Retry, Value> {
        let mut retry = Retry::default();
        match option(f, "retry") {
            None => {}
            Some(Value::Int(n)) if (0..=100).contains(n) => retry.attempts = *n as u32 + 1,
            Some(other) => {
                return Err(self.error(format!(
                    "{} {}: :retry must be a count from 0 to 100, not {}",
                    f.kind,
                    f.name,
                    repr(other)
                )))
            }
        }
        if let Some(ms) = self.option_ms(f, "backoff-ms")? {
            retry.backoff_ms = ms;
        }
        Ok(retry)
    }
}

fn option<'v>(f: &Form<'v>, key: &str) -> Option<&'v Value> {
    f.options.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_one as read_data;

    fn flow(text: &str) -> Flow {
        Flow::read("f", &read_data(text).unwrap()).unwrap()
    }

    /// Runs a flow with every call answering `answer(node name)`; returns the visited names.
    fn walk(f: &Flow, answer: impl Fn(&str) -> Value) -> Vec<String> {
        let mut pos = Position::default();
        let mut seen = Vec::new();
        loop {
            let happened = match f.action(&mut pos).unwrap() {
                Action::Done => return seen,
                Action::Call { node, .. } => {
                    seen.push(node.name().unwrap().to_string());
                    Happened::Value(answer(node.name().unwrap()))
                }
                Action::Sleep { node, .. } | Action::Suspend { node, .. } => {
                    seen.push(node.name().unwrap().to_string());
                    Happened::Elapsed
                }
            };
            f.advance(&mut pos, happened).unwrap();
        }
    }

    #[test]
    fn branches_pick_a_side() {
        let f = flow("((branch urgent? t :then ((effect a f)) :else ((effect b f))) (effect c f))");
        assert_eq!(walk(&f, |_| Value::Bool(true)), ["urgent?", "a", "c"]);
        assert_eq!(walk(&f, |_| Value::Bool(false)), ["urgent?", "b", "c"]);
    }

    #[test]
    fn each_runs_its_nodes_per_item() {
        let f = flow("((each items f (effect a f) (effect b f)) (effect c f))");
        let answer = |n: &str| match n {
            "items" => read_data("(1 2 3)").unwrap(),
            _ => Value::Nil,
        };
        assert_eq!(
            walk(&f, answer),
            ["items", "a", "b", "a", "b", "a", "b", "c"]
        );
        assert_eq!(walk(&f, |_| Value::Nil), ["items", "c"]);
    }

    #[test]
    fn a_timeout_runs_its_branch_and_a_resume_skips_it() {
        let f =
            flow("((suspend wait :timeout-ms 10 :on-timeout ((effect late f))) (effect after f))");
        assert_eq!(walk(&f, |_| Value::Nil), ["wait", "late", "after"]);
        let mut pos = Position::default();
        f.action(&mut pos).unwrap();
        f.advance(&mut pos, Happened::Value(Value::Int(1))).unwrap();
        match f.action(&mut pos).unwrap() {
            Action::Call { node, .. } => assert_eq!(node.name(), Some("after")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_definitions_are_refused_with_flow_error() {
        for text in [
            "((effect))",
            "((effect a))",
            "((effect a f) (effect a f))",
            "((launch a f))",
            "((suspend s :on-timeout ((effect a f))))",
            "((sleep s))",
            "((sleep s :for-ms -1))",
            "((effect a f :retry \"many\"))",
            "((effect a f :colour 1))",
            "((each e f))",
            "(1)",
            "x",
        ] {
            let err = Flow::read("f", &read_data(text).unwrap()).unwrap_err();
            let Value::Error(e) = err else { panic!() };
            assert_eq!(&*e.error_type, "flow-error", "{text}");
        }
    }

    #[test]
    fn versions_follow_the_text() {
        let a = flow("((effect a f))");
        assert_eq!(a.version, flow("((effect a f))").version);
        assert_ne!(a.version, flow("((effect a g))").version);
    }

    #[test]
    fn positions_round_trip_and_keys_differ_per_round() {
        let f = flow("((each items f (effect a f)))");
        let mut pos = Position::default();
        f.action(&mut pos).unwrap();
        f.advance(&mut pos, Happened::Value(read_data("(1 2)").unwrap()))
            .unwrap();
        let first = Flow::idempotency_key("i", &pos);
        assert_eq!(Position::from_value(&pos.to_value()).unwrap(), pos);
        f.advance(&mut pos, Happened::Value(Value::Nil)).unwrap();
        f.action(&mut pos).unwrap();
        assert_ne!(Flow::idempotency_key("i", &pos), first);
        assert_eq!(Flow::item(&pos), Value::Int(2));
    }

    #[test]
    fn the_drawing_has_every_node_and_the_branch_arrows() {
        let f = flow("((branch b t :then ((effect x f)) :else ((effect y f))) (effect z f))");
        let names: Vec<_> = f.places.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "x", "y", "z", "end"]);
        let x = f.places.iter().find(|p| p.name == "x").unwrap();
        let y = f.places.iter().find(|p| p.name == "y").unwrap();
        assert_eq!((x.row, y.row), (1, 1));
        assert_ne!(x.col, y.col);
        assert!(f.edges.iter().any(|e| e.label == "yes"));
        assert!(f.edges.iter().any(|e| e.label == "no"));
        let z = f.places.iter().find(|p| p.name == "z").unwrap();
        assert_eq!(f.edges.iter().filter(|e| e.to == z.pc).count(), 2);
    }
}
