//! SX values: the data every engine, the printer and the host share.
//!
//! Values are cheap to clone (`Rc` inside) and not `Send`: one kernel image per thread.
//! Lists are persistent cons lists (O(1) `cons`/`first`/`rest`, cached length); dicts are
//! persistent ordered maps (O(log n) `get`/`assoc`/`dissoc`) keyed in the total order of
//! SX.md §2. Nothing here evaluates anything.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};

/// An interned name, used for symbols and keywords. Equality and hashing are by identity;
/// ordering is by name (the order SX.md §2 asks for).
#[derive(Clone, Copy)]
pub struct Symbol(&'static str);

fn interner() -> &'static Mutex<HashSet<&'static str>> {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

impl Symbol {
    /// Interns `name`. Interned names live for the whole process (like Lisp symbols).
    pub fn new(name: &str) -> Symbol {
        let mut table = interner()
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(existing) = table.get(name) {
            return Symbol(existing);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        table.insert(leaked);
        Symbol(leaked)
    }

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl PartialEq for Symbol {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Symbol {}
impl Hash for Symbol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0.as_ptr() as usize).hash(state)
    }
}
impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Symbol {
    fn cmp(&self, other: &Self) -> Ordering {
        if self == other {
            Ordering::Equal
        } else {
            self.0.cmp(other.0)
        }
    }
}
impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A persistent list. A list value is a node and the length of the list it starts, so
/// `len` is O(1). There are two kinds of node:
/// - a cons cell: a head and the list after it;
/// - a chunk: elements stored back to front in one vector. The bulk builders (collecting,
///   `From<Vec>`, hence `range`, `map`, `sort`, `string-split`) make one allocation for a
///   whole list instead of one per element, and `rest` of a chunk is the same chunk one
///   element shorter.
///
/// `cons` onto a chunk that nothing else holds pushes in place (the chunk is then the
/// caller's alone, so no other list can see the change); onto a shared list it makes a
/// cons cell. A list built by consing onto its own unique tail — an accumulator loop whose
/// call moves the list (see the compiler's last reads) — is one vector.
#[derive(Clone, Default)]
pub struct List {
    node: Option<Rc<Node>>,
    /// The number of elements (0 exactly when `node` is `None`). For a chunk, also how
    /// many of its elements this list sees.
    len: u32,
}

enum Node {
    Cons {
        head: Value,
        tail: List,
    },
    /// The list is the vector's first `len` elements (1 ≤ len ≤ its length) read from
    /// index `len - 1` down to 0.
    Chunk(Vec<Value>),
}

/// Lists are limited to `u32::MAX` elements (96 GB of values): memory runs out long before.
fn list_len(n: usize) -> u32 {
    u32::try_from(n).expect("a list of more than 2^32 elements")
}

impl List {
    pub fn empty() -> List {
        List { node: None, len: 0 }
    }

    fn with(node: Node, len: u32) -> List {
        List {
            node: Some(Rc::new(node)),
            len,
        }
    }

    pub fn cons(head: Value, mut tail: List) -> List {
        let len = list_len(tail.len() + 1);
        if let Some(node) = tail.node.as_mut().and_then(Rc::get_mut) {
            match node {
                // Nothing else holds the chunk: elements past `tail.len` are nobody's.
                Node::Chunk(items) => {
                    items.truncate(tail.len as usize);
                    items.push(head);
                    tail.len = len;
                    return tail;
                }
                // A one-element list nothing else holds becomes a chunk on the second cons.
                Node::Cons {
                    head: last,
                    tail: rest,
                } if rest.is_empty() => {
                    let mut items = Vec::with_capacity(4);
                    items.extend([std::mem::take(last), head]);
                    *node = Node::Chunk(items);
                    tail.len = len;
                    return tail;
                }
                Node::Cons { .. } => {}
            }
        }
        List::with(Node::Cons { head, tail }, len)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.node.is_none()
    }

    pub fn first(&self) -> Option<&Value> {
        match self.node.as_deref()? {
            Node::Cons { head, .. } => Some(head),
            Node::Chunk(items) => items.get(self.len as usize - 1),
        }
    }

    /// The list without its first element; `()` for `()`.
    pub fn rest(&self) -> List {
        match self.node.as_deref() {
            Some(Node::Cons { tail, .. }) => tail.clone(),
            Some(Node::Chunk(_)) if self.len > 1 => List {
                node: self.node.clone(),
                len: self.len - 1,
            },
            _ => List::empty(),
        }
    }

    pub fn iter(&self) -> ListIter<'_> {
        ListIter::at(self)
    }

    pub fn nth(&self, index: usize) -> Option<&Value> {
        let mut list = self;
        let mut index = index;
        loop {
            match list.node.as_deref()? {
                Node::Cons { head, .. } if index == 0 => return Some(head),
                Node::Cons { tail, .. } => {
                    list = tail;
                    index -= 1;
                }
                Node::Chunk(items) => {
                    let i = (list.len as usize).checked_sub(index + 1)?;
                    return items.get(i);
                }
            }
        }
    }

    /// Identity of the list: its first node and its length (a chunk's lists share the
    /// node). The key of the reader's source positions.
    pub fn node_id(&self) -> Option<(usize, u32)> {
        self.node
            .as_ref()
            .map(|node| (Rc::as_ptr(node) as usize, self.len))
    }

    pub fn ptr_eq(&self, other: &List) -> bool {
        self.len == other.len
            && match (&self.node, &other.node) {
                (Some(a), Some(b)) => Rc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    pub fn to_vec(&self) -> Vec<Value> {
        self.iter().cloned().collect()
    }

    /// Builds a list of `items` in order, sharing `tail` after them.
    pub fn from_iter_with_tail<I>(items: I, tail: List) -> List
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: DoubleEndedIterator,
    {
        if tail.is_empty() {
            return items.into_iter().collect();
        }
        items
            .into_iter()
            .rev()
            .fold(tail, |acc, v| List::cons(v, acc))
    }
}

/// Collecting makes one chunk (one cons cell for a single element).
impl FromIterator<Value> for List {
    fn from_iter<T: IntoIterator<Item = Value>>(iter: T) -> Self {
        List::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl From<Vec<Value>> for List {
    fn from(mut items: Vec<Value>) -> Self {
        match items.len() {
            0 => List::empty(),
            1 => List::cons(items.swap_remove(0), List::empty()),
            n => {
                items.reverse();
                List::with(Node::Chunk(items), list_len(n))
            }
        }
    }
}

/// The elements of a list, front to back.
#[derive(Clone)]
pub struct ListIter<'a> {
    /// The next cons cell, and the length of the list it starts.
    cell: Option<(&'a Value, &'a List, u32)>,
    /// A chunk's elements still to visit, taken from the back (after the cells).
    chunk: &'a [Value],
}

impl<'a> ListIter<'a> {
    fn at(list: &'a List) -> ListIter<'a> {
        match list.node.as_deref() {
            None => ListIter {
                cell: None,
                chunk: &[],
            },
            Some(Node::Cons { head, tail }) => ListIter {
                cell: Some((head, tail, list.len)),
                chunk: &[],
            },
            Some(Node::Chunk(items)) => ListIter {
                cell: None,
                chunk: items.get(..list.len as usize).unwrap_or_default(),
            },
        }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a Value;
    fn next(&mut self) -> Option<&'a Value> {
        if let Some((head, tail, _)) = self.cell {
            *self = ListIter::at(tail);
            return Some(head);
        }
        let (last, before) = self.chunk.split_last()?;
        self.chunk = before;
        Some(last)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.cell.map_or(self.chunk.len(), |(_, _, n)| n as usize);
        (n, Some(n))
    }
}

impl ExactSizeIterator for ListIter<'_> {}

impl Drop for List {
    // Dropping a long (or deeply nested) list node by node would recurse once per node;
    // `drop_nodes` unlinks uniquely owned nodes in a loop instead, along the tail, keeping
    // nested lists found in elements on a work list (allocated only if there are any). A
    // shared list is only released: that is most drops, and it is a decrement, inline.
    #[inline]
    fn drop(&mut self) {
        match self.node.take() {
            Some(first) if Rc::strong_count(&first) == 1 => drop_nodes(first),
            // Shared (or empty): only released.
            shared => drop(shared),
        }
    }
}

/// Frees a uniquely held list's nodes (see `List`'s `Drop`).
#[inline(never)]
fn drop_nodes(first: Rc<Node>) {
    fn keep_nested(v: &mut Value, nested: &mut Vec<Rc<Node>>) {
        if let Value::List(inner) = v {
            if inner
                .node
                .as_ref()
                .is_some_and(|n| Rc::strong_count(n) == 1)
            {
                nested.extend(inner.node.take());
            }
        }
    }
    let mut next = Some(first);
    let mut nested: Vec<Rc<Node>> = Vec::new();
    while let Some(node) = next.take().or_else(|| nested.pop()) {
        match Rc::try_unwrap(node) {
            Ok(Node::Cons { mut head, mut tail }) => {
                next = tail.node.take();
                keep_nested(&mut head, &mut nested);
            }
            Ok(Node::Chunk(mut items)) => {
                for v in &mut items {
                    keep_nested(v, &mut nested);
                }
            }
            Err(_shared) => {}
        }
    }
}

/// A dictionary key: any value but a function, ordered as SX.md §2 says.
#[derive(Clone)]
pub struct Key(pub Value);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        compare(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Strings are the common key of a big dict: compared here without the general
        // match's call.
        match (&self.0, &other.0) {
            (Value::Str(a), Value::Str(b)) => cmp_str(a, b),
            _ => compare(&self.0, &other.0),
        }
    }
}

pub type Dict = imbl::GenericOrdMap<Key, Value, imbl::shared_ptr::RcK>;

/// A dict with keyword keys: how hosts build effect requests and answers.
pub fn kw_dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(Key(Value::kw(k)), v);
    }
    Value::Dict(d)
}

/// The value under the keyword `name` (`(get d :name)`).
pub fn kw_get<'a>(d: &'a Dict, name: &str) -> Option<&'a Value> {
    d.get(&Key(Value::kw(name)))
}

/// A function implemented in Rust.
pub struct Native {
    pub name: &'static str,
    pub min_args: usize,
    /// `None`: variadic.
    pub max_args: Option<usize>,
    pub kind: NativeKind,
}

pub type NativeFn = fn(&[Value]) -> Result<Value, Value>;

/// Most natives are plain functions; a few need the machine (they call back into SX or
/// touch the machine's state) and are carried out by the engine itself.
#[derive(Clone, Copy)]
pub enum NativeKind {
    Pure(NativeFn),
    /// `(apply f a b xs)`
    Apply,
    /// `(print a b ...)`: writes to the host's output sink.
    Print,
    /// `(call-with-fuel n thunk)`: runs `thunk` with at most `n` more steps.
    WithFuel,
    /// `(raise v)`
    Raise,
    /// `(eval datum)`: expands and runs a datum in the global environment.
    Eval,
}

/// A value owned by a kernel module that the core knows nothing about (a Datalog database):
/// mutable inside, compared and hashed by identity, printed as `#<...>` (not readable back).
/// The module that made it finds its own type again through `as_any`.
pub trait Opaque {
    /// What `type-of` answers, e.g. `"dl-db"`.
    fn type_name(&self) -> &'static str;
    /// The `#<...>` text `repr` prints.
    fn repr(&self) -> String;
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A closure of either engine. The value layer knows no engine: `code` is what the engine
/// that made the closure compiled (the VM's `Proto`, the interpreter's lambda with its
/// environment), which that engine finds again by downcasting; an engine handed another
/// engine's closure refuses it with a `type-error`.
pub struct Closure {
    pub name: Option<Symbol>,
    pub code: Rc<dyn std::any::Any>,
    /// The values the VM's code captured (the interpreter keeps its environment in `code`).
    pub captures: Box<[Value]>,
}

impl Closure {
    pub fn name(&self) -> Option<Symbol> {
        self.name
    }
}

/// `(defcomp ~name (&key a b children) body...)`: a closure whose parameters are the keys
/// followed by `children`.
pub struct Component {
    pub name: Symbol,
    pub keys: Vec<Symbol>,
    pub closure: Rc<Closure>,
}

/// One entry of an SX call stack: the function entered and the call site, when known.
#[derive(Clone, Debug, PartialEq)]
pub struct StackEntry {
    pub name: Rc<str>,
    pub file: Option<Rc<str>>,
    pub pos: Option<Pos>,
}

/// An error value (SX.md §4); its constructors and the kernel's error types are in `error.rs`.
pub struct ErrorValue {
    pub error_type: Rc<str>,
    pub message: Rc<str>,
    pub irritants: Vec<Value>,
    /// Innermost call first. Filled once, when the error is first raised.
    pub stack: RefCell<Vec<StackEntry>>,
}

/// A value: 24 bytes (the variant is kept in a niche of `Dict`'s fields; an explicit tag
/// byte would make every value, register and list cell 8 bytes larger).
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Keyword(Symbol),
    Symbol(Symbol),
    List(List),
    Dict(Dict),
    Fn(Rc<Closure>),
    Native(Rc<Native>),
    Macro(Rc<Closure>),
    Component(Rc<Component>),
    Error(Rc<ErrorValue>),
    /// Trusted HTML text, inserted unescaped by the renderers.
    Raw(Rc<str>),
    /// The VM's box for a local that closures capture and `set!` assigns. It lives only in
    /// VM frames and closure captures; SX code never sees one.
    Boxed(Rc<RefCell<Value>>),
    /// See [`Opaque`].
    Opaque(Rc<dyn Opaque>),
}

/// Nil: what a register holds when its value has been taken.
impl Default for Value {
    fn default() -> Value {
        Value::Nil
    }
}

impl Clone for Value {
    #[inline(always)]
    fn clone(&self) -> Value {
        match self {
            // The hot cases, without a call.
            Value::Int(n) => Value::Int(*n),
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Bool(*b),
            Value::Fn(f) => Value::Fn(f.clone()),
            other => other.clone_slow(),
        }
    }
}

impl Value {
    #[inline(never)]
    fn clone_slow(&self) -> Value {
        match self {
            Value::Nil => Value::Nil,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(n) => Value::Int(*n),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Keyword(k) => Value::Keyword(*k),
            Value::Symbol(s) => Value::Symbol(*s),
            Value::List(l) => Value::List(l.clone()),
            Value::Dict(d) => Value::Dict(d.clone()),
            Value::Fn(f) => Value::Fn(f.clone()),
            Value::Native(n) => Value::Native(n.clone()),
            Value::Macro(m) => Value::Macro(m.clone()),
            Value::Component(c) => Value::Component(c.clone()),
            Value::Error(e) => Value::Error(e.clone()),
            Value::Raw(r) => Value::Raw(r.clone()),
            Value::Boxed(b) => Value::Boxed(b.clone()),
            Value::Opaque(o) => Value::Opaque(o.clone()),
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }

    pub fn sym(name: &str) -> Value {
        Value::Symbol(Symbol::new(name))
    }

    pub fn kw(name: &str) -> Value {
        Value::Keyword(Symbol::new(name))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(List::from(items))
    }

    /// Numbers, booleans and nil: nothing to drop.
    #[inline(always)]
    pub fn is_plain(&self) -> bool {
        matches!(
            self,
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_)
        )
    }

    #[inline(always)]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn is_truthy(&self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Keyword(_) => "keyword",
            Value::Symbol(_) => "symbol",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Fn(_) | Value::Native(_) => "fn",
            Value::Macro(_) => "macro",
            Value::Component(_) => "component",
            Value::Error(_) => "error",
            Value::Raw(_) => "raw",
            Value::Boxed(_) => "box",
            Value::Opaque(o) => o.type_name(),
        }
    }

    pub fn is_function(&self) -> bool {
        matches!(self, Value::Fn(_) | Value::Native(_))
    }

    pub fn as_symbol(&self) -> Option<Symbol> {
        match self {
            Value::Symbol(s) => Some(*s),
            _ => None,
        }
    }
}

/// Structural equality (`=`): `1` equals `1.0`; functions and errors by identity.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Fn(a), Value::Fn(b)) | (Value::Macro(a), Value::Macro(b)) => Rc::ptr_eq(a, b),
            (Value::Native(a), Value::Native(b)) => Rc::ptr_eq(a, b),
            (Value::Component(a), Value::Component(b)) => Rc::ptr_eq(a, b),
            (Value::Error(a), Value::Error(b)) => Rc::ptr_eq(a, b),
            (Value::Opaque(a), Value::Opaque(b)) => Rc::ptr_eq(a, b),
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && (a.ptr_eq(b) || a.iter().zip(b.iter()).all(|(x, y)| x == y))
            }
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
            }
            _ => compare(self, other) == Ordering::Equal && self.is_number() == other.is_number(),
        }
    }
}

impl Value {
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Nil => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 2,
        Value::Str(_) => 3,
        Value::Keyword(_) => 4,
        Value::Symbol(_) => 5,
        Value::List(_) => 6,
        Value::Dict(_) => 7,
        Value::Raw(_) => 8,
        Value::Error(_) => 9,
        Value::Component(_) => 10,
        Value::Macro(_) => 11,
        Value::Fn(_) | Value::Native(_) => 12,
        Value::Boxed(_) => 13,
        Value::Opaque(_) => 14,
    }
}

/// 2^63 as a float: the first float above every i64.
pub const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Compares an integer with a float exactly (no rounding of large integers).
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less; // NaN sorts after every number
    }
    if f >= TWO_POW_63 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

fn cmp_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// The total order of SX.md §2: nil < booleans < numbers < strings < keywords < symbols <
/// lists < dicts < other values, natural order inside each group.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    use Value::*;
    match (a, b) {
        (Nil, Nil) => Ordering::Equal,
        (Bool(x), Bool(y)) => x.cmp(y),
        (Int(x), Int(y)) => x.cmp(y),
        (Float(x), Float(y)) => cmp_floats(*x, *y),
        (Int(x), Float(y)) => cmp_int_float(*x, *y),
        (Float(x), Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Str(x), Str(y)) | (Raw(x), Raw(y)) => cmp_str(x, y),
        (Keyword(x), Keyword(y)) | (Symbol(x), Symbol(y)) => x.cmp(y),
        (List(x), List(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                match compare(p, q) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Dict(x), Dict(y)) => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
                match compare(&ka.0, &kb.0).then_with(|| compare(va, vb)) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            x.len().cmp(&y.len())
        }
        (Error(x), Error(y)) => (Rc::as_ptr(x) as usize).cmp(&(Rc::as_ptr(y) as usize)),
        (Opaque(x), Opaque(y)) => {
            (Rc::as_ptr(x) as *const () as usize).cmp(&(Rc::as_ptr(y) as *const () as usize))
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// Byte order of two strings. The first eight bytes are compared as one big-endian number,
/// so short strings (most keys) need no `memcmp` call.
#[inline]
fn cmp_str(a: &str, b: &str) -> Ordering {
    // The first eight bytes, zero-padded, as a big-endian number (no loop: at most two
    // loads, overlapping for 4 to 7 bytes).
    fn head(s: &[u8]) -> u64 {
        let be4 =
            |at: usize| u64::from(u32::from_be_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]));
        match s.len() {
            8.. => u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
            n @ 4..=7 => be4(0) << 32 | be4(n - 4) << (64 - 8 * n),
            n => s[..n]
                .iter()
                .enumerate()
                .fold(0, |h, (i, &b)| h | u64::from(b) << (56 - 8 * i)),
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match head(a).cmp(&head(b)) {
        // Equal heads: a string of eight bytes or fewer is a prefix of the other (the
        // padding zeros matched its bytes), so the shorter is first.
        Ordering::Equal if a.len() <= 8 || b.len() <= 8 => a.len().cmp(&b.len()),
        Ordering::Equal => a[8..].cmp(&b[8..]),
        other => other,
    }
}

/// Where a datum was read: `line:col` (1-based) and whether it was written with brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A counter shared by `gensym`: symbols it makes contain `#`, which no reader produces.
pub fn gensym(prefix: &str) -> Symbol {
    thread_local! { static NEXT: RefCell<u64> = const { RefCell::new(0) }; }
    let n = NEXT.with(|c| {
        let mut c = c.borrow_mut();
        *c += 1;
        *c
    });
    Symbol::new(&format!("{prefix}#{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers, list cells and dict entries are sized by `Value`: a layout change that
    /// grows it (an explicit tag byte did) costs every workload memory.
    #[test]
    fn a_value_is_three_words() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    proptest::proptest! {
        /// The short-string comparison is byte order, including strings with zero bytes,
        /// prefixes of each other and multi-byte characters around the eighth byte.
        #[test]
        fn strings_compare_in_byte_order(
            a in "[a\\x00\u{e9}\u{1F600}]{0,12}",
            b in "[a\\x00\u{e9}\u{1F600}]{0,12}",
        ) {
            proptest::prop_assert_eq!(cmp_str(&a, &b), a.as_bytes().cmp(b.as_bytes()));
            let keys = (Key(Value::str(&a)), Key(Value::str(&b)));
            proptest::prop_assert_eq!(keys.0.cmp(&keys.1), a.cmp(&b));
        }
    }

    #[test]
    fn long_lists_drop_without_recursion() {
        let list: List = (0..1_000_000).map(Value::Int).collect();
        assert_eq!(list.len(), 1_000_000);
        drop(list);
        let mut nested = Value::Nil;
        for _ in 0..1_000_000 {
            nested = Value::list(vec![nested]);
        }
        drop(nested);
    }

    #[test]
    fn collecting_keeps_order_and_lengths() {
        for n in 0..5 {
            let list: List = (0..n).map(Value::Int).collect();
            assert_eq!(list.to_vec(), (0..n).map(Value::Int).collect::<Vec<_>>());
            assert_eq!(list.len(), n as usize);
            assert_eq!(list.iter().len(), n as usize);
            assert_eq!(list.rest().len(), (n as usize).saturating_sub(1));
            assert_eq!(list.nth(2), (n > 2).then_some(&Value::Int(2)));
        }
    }

    /// What a program does to lists, on a few lists kept side by side.
    #[derive(Debug, Clone)]
    enum ListOp {
        /// `lists[i] = (cons n lists[j])`
        Cons(usize, usize, i64),
        /// `lists[i] = (rest lists[j])`
        Rest(usize, usize),
        /// `lists[i] = (list ns...)`, a chunk
        Collect(usize, Vec<i64>),
        /// `lists[i] = ()`
        Clear(usize),
    }

    fn list_op() -> impl proptest::strategy::Strategy<Value = ListOp> {
        use proptest::prelude::*;
        prop_oneof![
            (0..4usize, 0..4usize, any::<i64>()).prop_map(|(i, j, n)| ListOp::Cons(i, j, n)),
            (0..4usize, 0..4usize).prop_map(|(i, j)| ListOp::Rest(i, j)),
            (0..4usize, proptest::collection::vec(any::<i64>(), 0..6))
                .prop_map(|(i, ns)| ListOp::Collect(i, ns)),
            (0..4usize).prop_map(ListOp::Clear),
        ]
    }

    proptest::proptest! {
        /// Chunks grown in place by `cons` stay persistent: every list kept reads what a
        /// model of plain vectors says, whatever was consed onto it or its tails since.
        #[test]
        fn lists_stay_persistent(ops in proptest::collection::vec(list_op(), 0..60)) {
            let mut lists: Vec<List> = vec![List::empty(); 4];
            let mut model: Vec<Vec<i64>> = vec![Vec::new(); 4];
            for op in ops {
                match op {
                    ListOp::Cons(i, j, n) => {
                        lists[i] = List::cons(Value::Int(n), lists[j].clone());
                        model[i] = std::iter::once(n).chain(model[j].clone()).collect();
                    }
                    ListOp::Rest(i, j) => {
                        lists[i] = lists[j].rest();
                        model[i] = model[j].iter().skip(1).copied().collect();
                    }
                    ListOp::Collect(i, ns) => {
                        lists[i] = ns.iter().copied().map(Value::Int).collect();
                        model[i] = ns;
                    }
                    ListOp::Clear(i) => {
                        lists[i] = List::empty();
                        model[i] = Vec::new();
                    }
                }
                for (list, want) in lists.iter().zip(&model) {
                    let got: Vec<i64> = list.iter().filter_map(Value::as_int).collect();
                    proptest::prop_assert_eq!(&got, want);
                    proptest::prop_assert_eq!(list.len(), want.len());
                    proptest::prop_assert_eq!(list.first().and_then(Value::as_int), want.first().copied());
                }
            }
        }
    }

    #[test]
    fn cons_onto_a_list_nothing_else_holds_grows_it_in_place() {
        let mut list = List::empty();
        for n in 0..100 {
            list = List::cons(Value::Int(n), list);
        }
        let first = list.node_id();
        list = List::cons(Value::Int(100), list);
        assert_eq!(
            list.node_id().map(|(node, _)| node),
            first.map(|(node, _)| node)
        );
        assert_eq!(list.len(), 101);
        assert_eq!(list.nth(100), Some(&Value::Int(0)));
        // Shared, it is left alone: the new list is a cons cell in front of it.
        let kept = list.clone();
        let longer = List::cons(Value::Int(-1), list);
        assert_ne!(
            longer.node_id().map(|(node, _)| node),
            kept.node_id().map(|(node, _)| node)
        );
        assert_eq!(kept.len(), 101);
        assert_eq!(kept.first(), Some(&Value::Int(100)));
    }

    #[test]
    fn deeply_nested_chunks_drop_without_recursion() {
        let mut nested = Value::Nil;
        for n in 0..1_000_000 {
            nested = Value::list(vec![nested, Value::Int(n)]);
        }
        drop(nested);
    }

    #[test]
    fn int_and_float_keys_are_the_same_key() {
        assert_eq!(compare(&Value::Int(1), &Value::Float(1.0)), Ordering::Equal);
        assert_eq!(
            compare(&Value::Int(2), &Value::Float(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Value::Int(i64::MAX), &Value::Float(9.3e18)),
            Ordering::Less
        );
        assert_eq!(Value::Int(1), Value::Float(1.0));
    }
}
