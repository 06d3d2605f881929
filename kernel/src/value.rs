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

/// A persistent singly linked list. Each node caches the length of the list it starts.
#[derive(Clone, Default)]
pub struct List(Option<Rc<Cons>>);

struct Cons {
    head: Value,
    tail: List,
    len: usize,
}

impl List {
    pub fn empty() -> List {
        List(None)
    }

    pub fn cons(head: Value, tail: List) -> List {
        let len = tail.len() + 1;
        List(Some(Rc::new(Cons { head, tail, len })))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.len)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn first(&self) -> Option<&Value> {
        self.0.as_ref().map(|c| &c.head)
    }

    /// The list without its first element; `()` for `()`.
    pub fn rest(&self) -> List {
        self.0.as_ref().map_or_else(List::empty, |c| c.tail.clone())
    }

    pub fn iter(&self) -> ListIter<'_> {
        ListIter(self.0.as_deref())
    }

    pub fn nth(&self, index: usize) -> Option<&Value> {
        self.iter().nth(index)
    }

    /// Identity of the first node: the key of the reader's source positions.
    pub fn node_id(&self) -> Option<usize> {
        self.0.as_ref().map(|c| Rc::as_ptr(c) as usize)
    }

    pub fn ptr_eq(&self, other: &List) -> bool {
        match (&self.0, &other.0) {
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
        items
            .into_iter()
            .rev()
            .fold(tail, |acc, v| List::cons(v, acc))
    }
}

impl List {
    /// Reverses a list whose nodes nobody else holds by relinking them in place (no
    /// allocation); nodes that are shared are copied.
    pub fn reverse_owned(mut self) -> List {
        let mut reversed = List::empty();
        let mut len = 0;
        while let Some(mut node) = self.0.take() {
            len += 1;
            match Rc::get_mut(&mut node) {
                Some(cons) => {
                    self = std::mem::replace(&mut cons.tail, reversed);
                    cons.len = len;
                    reversed = List(Some(node));
                }
                None => {
                    self = node.tail.clone();
                    reversed = List::cons(node.head.clone(), reversed);
                }
            }
        }
        reversed
    }
}

/// Collecting builds the list back to front and relinks it: the only memory is the list.
impl FromIterator<Value> for List {
    fn from_iter<T: IntoIterator<Item = Value>>(iter: T) -> Self {
        let mut backwards = List::empty();
        for v in iter {
            backwards = List::cons(v, backwards);
        }
        backwards.reverse_owned()
    }
}

impl From<Vec<Value>> for List {
    fn from(items: Vec<Value>) -> Self {
        List::from_iter_with_tail(items, List::empty())
    }
}

#[derive(Clone)]
pub struct ListIter<'a>(Option<&'a Cons>);

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a Value;
    fn next(&mut self) -> Option<&'a Value> {
        let node = self.0?;
        self.0 = node.tail.0.as_deref();
        Some(&node.head)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.map_or(0, |c| c.len);
        (n, Some(n))
    }
}

impl Drop for List {
    // Dropping a long (or deeply nested) list node by node would recurse once per node;
    // `drop_cells` unlinks uniquely owned nodes in a loop instead, along the tail, keeping
    // nested lists found in heads on a work list (allocated only if there are any). A
    // shared list is only released: that is most drops, and it is a decrement, inline.
    #[inline]
    fn drop(&mut self) {
        match self.0.take() {
            Some(first) if Rc::strong_count(&first) == 1 => drop_cells(first),
            // Shared (or empty): only released.
            shared => drop(shared),
        }
    }
}

/// Frees a uniquely held list's cells (see `List`'s `Drop`).
#[inline(never)]
fn drop_cells(first: Rc<Cons>) {
    let mut next = Some(first);
    let mut nested: Vec<Rc<Cons>> = Vec::new();
    while let Some(node) = next.take().or_else(|| nested.pop()) {
        if let Ok(mut cons) = Rc::try_unwrap(node) {
            next = cons.tail.0.take();
            if let Value::List(inner) = &mut cons.head {
                if let Some(inner) = inner.0.take() {
                    nested.push(inner);
                }
            }
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
        let list: List = (0..5).map(Value::Int).collect();
        assert_eq!(list.to_vec(), (0..5).map(Value::Int).collect::<Vec<_>>());
        assert_eq!(list.len(), 5);
        assert_eq!(list.rest().len(), 4);
        // A shared tail is copied, not relinked.
        let shared: List = (0..3).map(Value::Int).collect();
        let keep = shared.rest();
        let reversed = shared.reverse_owned();
        assert_eq!(
            reversed.to_vec(),
            vec![Value::Int(2), Value::Int(1), Value::Int(0)]
        );
        assert_eq!(keep.to_vec(), vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(reversed.rest().len(), 2);
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
