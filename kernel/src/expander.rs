//! The expander: read forms to [`Expr`], the core language both engines run.
//!
//! It expands macros (running them on the engine), desugars derived forms (`cond`, `case`,
//! `let*`, named `let`, `when`, quasiquote, ...), resolves every variable to a frame slot
//! (`depth`, `index`) or a global cell, and checks special forms: a malformed one is a
//! `syntax-error` raised before the top-level form runs. It never evaluates user code itself
//! except macro bodies.
//!
//! The library's own bindings: every library name `n` (natives, the prelude's definitions)
//! is bound twice, publicly as `n` and privately as [`library_name`]`(n)`, a symbol no reader
//! produces. Code the library itself is made of (the prelude, expanded in *library mode*)
//! and code the expander generates (`case` tests, quasiquote, `guard`'s re-raise) name only
//! the private bindings, and user code cannot define or assign those; so a user's
//! `(define (reverse xs) ...)` rebinds their `reverse`, never what `map` calls.

use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{syntax_error, StackEntry};
use crate::html;
use crate::reader::{dict_literal_head, SourceMap};
use crate::value::{Dict, Key, List, Pos, Symbol, Value};

/// A global variable: a cell shared by every expression that names it.
pub struct Global {
    pub name: Symbol,
    pub value: std::cell::RefCell<Option<Value>>,
    /// Still holds the core native it was installed with: the VM's fast paths for
    /// primitives (`+`, `<`, `first`...) rely on this and fall back to a call when not.
    pub builtin: std::cell::Cell<bool>,
}

impl Global {
    /// Binds the global (`define`, `set!`, `defmacro`, `defcomp`).
    pub fn set(&self, value: Value) {
        self.builtin.set(false);
        *self.value.borrow_mut() = Some(value);
    }

    pub fn is_bound(&self) -> bool {
        self.value.borrow().is_some()
    }
}

pub type Globals = HashMap<Symbol, Rc<Global>>;

/// The prefix of the library's private names: `#` starts no symbol the reader reads.
const LIBRARY_PREFIX: &str = "#lib/";

/// The library's own binding of `name` (see the module comment).
pub fn library_name(name: Symbol) -> Symbol {
    thread_local! {
        static NAMES: std::cell::RefCell<HashMap<Symbol, Symbol>> = Default::default();
    }
    if is_library_name(name) {
        return name;
    }
    NAMES.with(|names| {
        *names
            .borrow_mut()
            .entry(name)
            .or_insert_with(|| Symbol::new(&format!("{LIBRARY_PREFIX}{}", name.name())))
    })
}

pub fn is_library_name(name: Symbol) -> bool {
    name.name().starts_with(LIBRARY_PREFIX)
}

/// A source location: file and `line:col`.
#[derive(Clone, Debug, PartialEq)]
pub struct SrcLoc {
    pub file: Option<Rc<str>>,
    pub pos: Pos,
}

pub type ExprRef = Rc<Expr>;

pub enum Expr {
    Const(Value),
    Local {
        depth: usize,
        index: usize,
    },
    Global {
        global: Rc<Global>,
        loc: Option<Rc<SrcLoc>>,
    },
    /// A head that names an HTML tag but was unbound when expanded: a call if the global is
    /// bound when this runs (a function defined later), else the element.
    CallOrElement {
        global: Rc<Global>,
        call: ExprRef,
        element: ExprRef,
    },
    SetLocal {
        depth: usize,
        index: usize,
        value: ExprRef,
    },
    /// `set!` of a global: an error when it is unbound.
    SetGlobal {
        global: Rc<Global>,
        value: ExprRef,
    },
    Define {
        global: Rc<Global>,
        value: ExprRef,
    },
    If(ExprRef, ExprRef, ExprRef),
    /// The expander builds these three only through [`seq`] and [`and_or`], which give
    /// them at least two items; an empty one still runs (as `(begin)`, `(and)`, `(or)`).
    Seq(Vec<ExprRef>),
    And(Vec<ExprRef>),
    Or(Vec<ExprRef>),
    Lambda(Rc<LambdaCode>),
    /// `items[0]` is the function, the rest are the arguments.
    Call {
        items: Vec<ExprRef>,
        loc: Option<Rc<SrcLoc>>,
    },
    /// Evaluates `inits` in the current frame, then `body` in a new frame of `slots` slots
    /// whose first ones hold the inits.
    Let {
        inits: Vec<ExprRef>,
        slots: usize,
        body: ExprRef,
    },
    MakeList(Vec<ExprRef>),
    /// Keys and values alternate; evaluated in written order, later keys win.
    MakeDict(Vec<ExprRef>),
    MakeElement {
        tag: Symbol,
        items: Vec<ExprRef>,
    },
    /// `handler` runs in a new one-slot frame holding the raised value.
    Guard {
        body: ExprRef,
        handler: ExprRef,
    },
    Perform {
        request: ExprRef,
        loc: Option<Rc<SrcLoc>>,
    },
    DefMacro {
        global: Rc<Global>,
        code: Rc<LambdaCode>,
    },
    DefComp {
        global: Rc<Global>,
        keys: Vec<Symbol>,
        code: Rc<LambdaCode>,
    },
    DefTest {
        name: Rc<str>,
        code: Rc<LambdaCode>,
        loc: Option<Rc<SrcLoc>>,
    },
}

impl Expr {
    /// The sub-expressions of a node that evaluates all of them in order and combines the
    /// values (sequences, calls, constructors); `None` for every other node.
    pub fn evaluated_in_order(&self) -> Option<&[ExprRef]> {
        match self {
            Expr::Seq(items)
            | Expr::And(items)
            | Expr::Or(items)
            | Expr::Call { items, .. }
            | Expr::MakeList(items)
            | Expr::MakeDict(items)
            | Expr::MakeElement { items, .. } => Some(items),
            _ => None,
        }
    }

    /// What an empty `Seq`, `And` or `Or` evaluates to: `(begin)` and `(or)` are nil,
    /// `(and)` is true. The expander never makes one (see [`and_or`]); the engines still
    /// run one rather than index into it.
    pub fn empty_value(&self) -> Value {
        match self {
            Expr::And(_) => Value::Bool(true),
            _ => Value::Nil,
        }
    }
}

pub struct LambdaCode {
    pub name: Option<Symbol>,
    /// Required parameters.
    pub params: usize,
    /// A `&rest` parameter follows the required ones.
    pub rest: bool,
    /// Frame size: parameters, the rest list, internal definitions.
    pub slots: usize,
    pub body: ExprRef,
    pub loc: Option<Rc<SrcLoc>>,
}

/// What the expander needs from the engine: global cells and a way to run macros.
pub trait MacroHost {
    fn globals(&mut self) -> &mut Globals;
    fn call_macro(&mut self, mac: &Value, args: Vec<Value>) -> Result<Value, Value>;
}

pub fn global_cell(globals: &mut Globals, name: Symbol) -> Rc<Global> {
    globals
        .entry(name)
        .or_insert_with(|| {
            Rc::new(Global {
                name,
                value: std::cell::RefCell::new(None),
                builtin: std::cell::Cell::new(false),
            })
        })
        .clone()
}

const MAX_EXPANSION_DEPTH: usize = 2_000;

const SPECIAL_FORMS: &[&str] = &[
    "quote",
    "quasiquote",
    "unquote",
    "unquote-splicing",
    "if",
    "when",
    "unless",
    "cond",
    "case",
    "and",
    "or",
    "begin",
    "set!",
    "define",
    "fn",
    "lambda",
    "let",
    "let*",
    "letrec",
    "defmacro",
    "defcomp",
    "guard",
    "perform",
    "deftest",
];

pub fn is_special_form(name: &str) -> bool {
    SPECIAL_FORMS.contains(&name)
}

struct Scope {
    /// Slot names; `None` for a slot no name reaches (named-let plumbing, case keys).
    names: Vec<Option<Symbol>>,
}

pub struct Expander<'a> {
    host: &'a mut dyn MacroHost,
    sources: &'a mut SourceMap,
    file: Option<Rc<str>>,
    scopes: Vec<Scope>,
    depth: usize,
    /// Position of the innermost list being expanded, for error messages.
    here: Option<Pos>,
    /// Expanding the library itself: free names mean the library's own bindings, and a
    /// top-level definition binds the private name and publishes it under the public one.
    library: bool,
}

type Expanded = Result<ExprRef, Value>;

fn konst(v: Value) -> ExprRef {
    Rc::new(Expr::Const(v))
}

/// `(begin e...)`: nil for none, the expression itself for one.
fn seq(mut exprs: Vec<ExprRef>) -> ExprRef {
    match exprs.len() {
        0 => konst(Value::Nil),
        1 => exprs.pop().unwrap_or_else(|| konst(Value::Nil)),
        _ => Rc::new(Expr::Seq(exprs)),
    }
}

/// `(and e...)` / `(or e...)`: `true` / `nil` for none, the expression itself for one.
/// Every `And` and `Or` the expander makes comes from here, whatever built the list
/// (the `and`/`or` forms, `case` tests, `cond` clauses without a body).
fn and_or(is_and: bool, mut exprs: Vec<ExprRef>) -> ExprRef {
    match exprs.len() {
        0 => konst(if is_and {
            Value::Bool(true)
        } else {
            Value::Nil
        }),
        1 => exprs.pop().unwrap_or_else(|| konst(Value::Nil)),
        _ if is_and => Rc::new(Expr::And(exprs)),
        _ => Rc::new(Expr::Or(exprs)),
    }
}

/// Turns code-mode dict literals inside a quoted datum into dicts.
pub fn datum(v: &Value) -> Value {
    match v {
        Value::List(items) => {
            if items.first() == Some(&Value::Symbol(dict_literal_head())) {
                let mut dict = Dict::new();
                let rest: Vec<Value> = items.rest().iter().map(datum).collect();
                for pair in rest.chunks(2) {
                    if let [k, v] = pair {
                        dict.insert(Key(k.clone()), v.clone());
                    }
                }
                Value::Dict(dict)
            } else if items.iter().any(needs_datum_conversion) {
                Value::List(items.iter().map(datum).collect())
            } else {
                v.clone()
            }
        }
        other => other.clone(),
    }
}

fn needs_datum_conversion(v: &Value) -> bool {
    match v {
        Value::List(items) => {
            items.first() == Some(&Value::Symbol(dict_literal_head()))
                || items.iter().any(needs_datum_conversion)
        }
        _ => false,
    }
}

impl<'a> Expander<'a> {
    pub fn new(
        host: &'a mut dyn MacroHost,
        sources: &'a mut SourceMap,
        file: Option<Rc<str>>,
    ) -> Self {
        Expander {
            host,
            sources,
            file,
            scopes: Vec::new(),
            depth: 0,
            here: None,
            library: false,
        }
    }

    /// An expander for the library's own code (the prelude): see the module comment.
    pub fn for_library(mut self) -> Self {
        self.library = true;
        self
    }

    /// Expands one top-level form.
    pub fn expand_toplevel(&mut self, form: &Value) -> Expanded {
        self.expand(form)
    }

    fn loc(&self, pos: Option<Pos>) -> Option<Rc<SrcLoc>> {
        pos.map(|pos| {
            Rc::new(SrcLoc {
                file: self.file.clone(),
                pos,
            })
        })
    }

    fn syntax<T>(&self, message: impl Into<String>, form: &Value) -> Result<T, Value> {
        let err = syntax_error(message, vec![form.clone()]);
        if let Value::Error(e) = &err {
            e.stack.borrow_mut().push(StackEntry {
                name: Rc::from("<expand>"),
                file: self.file.clone(),
                pos: self.here,
            });
        }
        Err(err)
    }

    /// Code a macro made has no source position: give it the macro call's.
    fn locate_expansion(&mut self, expansion: &Value) {
        if let (Value::List(list), Some(pos)) = (expansion, self.here) {
            if self.sources.pos(list).is_none() {
                self.sources.record(list, pos);
            }
        }
    }

    fn resolve_local(&self, name: Symbol) -> Option<(usize, usize)> {
        for (depth, scope) in self.scopes.iter().rev().enumerate() {
            if let Some(index) = scope.names.iter().rposition(|n| *n == Some(name)) {
                return Some((depth, index));
            }
        }
        None
    }

    /// The global a free name refers to here: in library mode, the library's own.
    fn global(&mut self, name: Symbol) -> Rc<Global> {
        let name = if self.library {
            library_name(name)
        } else {
            name
        };
        global_cell(self.host.globals(), name)
    }

    fn global_value(&mut self, name: Symbol) -> Option<Value> {
        self.global(name).value.borrow().clone()
    }

    /// A call of the library's own `name`, for code the expander generates.
    fn library_call(&mut self, name: &str, args: Vec<ExprRef>) -> ExprRef {
        let global = global_cell(self.host.globals(), library_name(Symbol::new(name)));
        let mut items = vec![Rc::new(Expr::Global { global, loc: None })];
        items.extend(args);
        Rc::new(Expr::Call { items, loc: None })
    }

    /// The global a `define` / `set!` / `defmacro` of `name` binds: user code may not bind
    /// the library's private names.
    fn assignable(&mut self, name: Symbol, form: &Value) -> Result<Rc<Global>, Value> {
        if is_library_name(name) && !self.library {
            return self.syntax(
                format!(
                    "{} is the library's own binding and cannot be rebound",
                    name.name()
                ),
                form,
            );
        }
        Ok(self.global(name))
    }

    /// A top-level definition: in library mode the private binding is defined and then
    /// published under the public name (`define_public` of the private global's value).
    fn define_global(&mut self, name: Symbol, define: Expr) -> Expanded {
        let define = Rc::new(define);
        if !self.library {
            return Ok(define);
        }
        let private = self.global(name);
        let public = global_cell(self.host.globals(), name);
        Ok(Rc::new(Expr::Seq(vec![
            define,
            Rc::new(Expr::Define {
                global: public,
                value: Rc::new(Expr::Global {
                    global: private,
                    loc: None,
                }),
            }),
        ])))
    }

    fn expand(&mut self, form: &Value) -> Expanded {
        if self.depth >= MAX_EXPANSION_DEPTH {
            return self.syntax(
                format!("forms nested deeper than {MAX_EXPANSION_DEPTH} (or a macro that never stops expanding)"),
                &Value::Nil,
            );
        }
        self.depth += 1;
        let saved = self.here;
        let result = self.expand_inner(form);
        self.here = saved;
        self.depth -= 1;
        result
    }

    fn expand_inner(&mut self, form: &Value) -> Expanded {
        match form {
            Value::Symbol(s) => Ok(self.variable(*s)),
            Value::List(items) if !items.is_empty() => {
                if let Some(pos) = self.sources.pos(items) {
                    self.here = Some(pos);
                }
                if self.sources.is_bracket(items) {
                    let exprs = self.expand_all(items.iter())?;
                    return Ok(Rc::new(Expr::MakeList(exprs)));
                }
                self.expand_list(form, items)
            }
            other => Ok(konst(other.clone())),
        }
    }

    fn variable(&mut self, s: Symbol) -> ExprRef {
        match self.resolve_local(s) {
            Some((depth, index)) => Rc::new(Expr::Local { depth, index }),
            None => Rc::new(Expr::Global {
                global: self.global(s),
                loc: self.loc(self.here),
            }),
        }
    }

    fn expand_all<'v>(
        &mut self,
        forms: impl Iterator<Item = &'v Value>,
    ) -> Result<Vec<ExprRef>, Value> {
        forms.map(|f| self.expand(f)).collect()
    }

    fn expand_list(&mut self, form: &Value, items: &List) -> Expanded {
        let head = items.first().cloned().unwrap_or(Value::Nil);
        let args: Vec<Value> = items.rest().to_vec();
        if let Value::Symbol(s) = head {
            if self.resolve_local(s).is_none() {
                if s == dict_literal_head() {
                    let exprs = self.expand_all(args.iter())?;
                    return Ok(Rc::new(Expr::MakeDict(exprs)));
                }
                if is_special_form(s.name()) {
                    return self.special(s.name(), form, &args);
                }
                match self.global_value(s) {
                    Some(mac @ Value::Macro(_)) => {
                        let expansion = self.host.call_macro(&mac, args).inspect_err(|e| {
                            if let Value::Error(err) = e {
                                err.stack.borrow_mut().push(StackEntry {
                                    name: Rc::from(format!("macro {}", s.name())),
                                    file: self.file.clone(),
                                    pos: self.here,
                                });
                            }
                        })?;
                        self.locate_expansion(&expansion);
                        return self.expand(&expansion);
                    }
                    Some(_) => {}
                    None if html::is_tag(s.name()) => {
                        let exprs = self.expand_all(args.iter())?;
                        let global = self.global(s);
                        let mut items = vec![Rc::new(Expr::Global {
                            global: global.clone(),
                            loc: self.loc(self.here),
                        })];
                        items.extend(exprs.iter().cloned());
                        let call = Rc::new(Expr::Call {
                            items,
                            loc: self.loc(self.here),
                        });
                        let element = Rc::new(Expr::MakeElement {
                            tag: s,
                            items: exprs,
                        });
                        return Ok(Rc::new(Expr::CallOrElement {
                            global,
                            call,
                            element,
                        }));
                    }
                    None => {}
                }
            }
        }
        let mut exprs = vec![self.expand(&head)?];
        exprs.extend(self.expand_all(args.iter())?);
        Ok(Rc::new(Expr::Call {
            items: exprs,
            loc: self.loc(self.here),
        }))
    }

    fn special(&mut self, name: &str, form: &Value, args: &[Value]) -> Expanded {
        match name {
            "quote" => match args {
                [x] => Ok(konst(datum(x))),
                _ => self.syntax("quote takes exactly one datum", form),
            },
            "quasiquote" => match args {
                [x] => self.quasi(x, 1),
                _ => self.syntax("quasiquote takes exactly one datum", form),
            },
            "unquote" | "unquote-splicing" => {
                self.syntax(format!("{name} outside of quasiquote"), form)
            }
            "if" => match args {
                [c, t] => Ok(Rc::new(Expr::If(
                    self.expand(c)?,
                    self.expand(t)?,
                    konst(Value::Nil),
                ))),
                [c, t, e] => Ok(Rc::new(Expr::If(
                    self.expand(c)?,
                    self.expand(t)?,
                    self.expand(e)?,
                ))),
                _ => self.syntax(
                    "if takes a test, a consequent and an optional alternative",
                    form,
                ),
            },
            "when" | "unless" => {
                let Some((test, body)) = args.split_first() else {
                    return self.syntax(format!("{name} needs a test"), form);
                };
                let test = self.expand(test)?;
                let body = seq(self.expand_all(body.iter())?);
                Ok(Rc::new(if name == "when" {
                    Expr::If(test, body, konst(Value::Nil))
                } else {
                    Expr::If(test, konst(Value::Nil), body)
                }))
            }
            "cond" => self.cond(form, args),
            "case" => self.case(form, args),
            "and" | "or" => Ok(and_or(name == "and", self.expand_all(args.iter())?)),
            "begin" => Ok(seq(self.expand_all(args.iter())?)),
            "set!" => match args {
                [Value::Symbol(s), e] => {
                    let value = self.expand(e)?;
                    Ok(Rc::new(match self.resolve_local(*s) {
                        Some((depth, index)) => Expr::SetLocal {
                            depth,
                            index,
                            value,
                        },
                        None => Expr::SetGlobal {
                            global: self.assignable(*s, form)?,
                            value,
                        },
                    }))
                }
                _ => self.syntax("set! takes a symbol and a value", form),
            },
            "define" => {
                if !self.scopes.is_empty() {
                    return self.syntax(
                        "define is allowed only at the top level or directly in a body",
                        form,
                    );
                }
                let (name, value) = self.definition(form, args)?;
                let global = self.assignable(name, form)?;
                self.define_global(name, Expr::Define { global, value })
            }
            "fn" | "lambda" => match args {
                [params, body @ ..] => {
                    let code = self.lambda(None, params, body, form)?;
                    Ok(Rc::new(Expr::Lambda(code)))
                }
                _ => self.syntax(format!("{name} needs a parameter list"), form),
            },
            "let" => self.let_form(form, args),
            "let*" => match args {
                [bindings, body @ ..] => {
                    let Value::List(list) = bindings else {
                        return self.syntax("let* needs a binding list", form);
                    };
                    if list.len() <= 1 {
                        return self.let_form(form, args);
                    }
                    let first = Value::list(vec![list.first().cloned().unwrap_or(Value::Nil)]);
                    let mut inner = vec![Value::sym("let*"), Value::List(list.rest())];
                    inner.extend(body.iter().cloned());
                    self.let_form(form, &[first, Value::list(inner)])
                }
                _ => self.syntax("let* needs a binding list", form),
            },
            "letrec" => self.letrec(form, args),
            "defmacro" => {
                if !self.scopes.is_empty() {
                    return self.syntax("defmacro is allowed only at the top level", form);
                }
                match args {
                    [Value::Symbol(name), params, body @ ..] => {
                        let code = self.lambda(Some(*name), params, body, form)?;
                        let global = self.assignable(*name, form)?;
                        self.define_global(*name, Expr::DefMacro { global, code })
                    }
                    _ => self.syntax("defmacro takes a name, a parameter list and a body", form),
                }
            }
            "defcomp" => self.defcomp(form, args),
            "guard" => self.guard(form, args),
            "perform" => match args {
                [request] => Ok(Rc::new(Expr::Perform {
                    request: self.expand(request)?,
                    loc: self.loc(self.here),
                })),
                _ => self.syntax("perform takes exactly one request", form),
            },
            "deftest" => match args {
                [Value::Str(test_name), body @ ..] => {
                    let loc = self.loc(self.here);
                    let code = self.lambda(
                        Some(Symbol::new(&format!("test {test_name:?}"))),
                        &Value::list(vec![]),
                        body,
                        form,
                    )?;
                    Ok(Rc::new(Expr::DefTest {
                        name: test_name.clone(),
                        code,
                        loc,
                    }))
                }
                _ => self.syntax("deftest takes a name string and a body", form),
            },
            _ => self.syntax(format!("unknown special form {name}"), form),
        }
    }

    /// `(define x e)` / `(define (f a b) body...)` → the name and the value expression.
    fn definition(&mut self, form: &Value, args: &[Value]) -> Result<(Symbol, ExprRef), Value> {
        match args {
            [Value::Symbol(name)] => Ok((*name, konst(Value::Nil))),
            [Value::Symbol(name), value] => {
                let value = self.expand(value)?;
                // Name anonymous lambdas after what they are defined as.
                let value = match &*value {
                    Expr::Lambda(code) if code.name.is_none() => {
                        Rc::new(Expr::Lambda(Rc::new(LambdaCode {
                            name: Some(*name),
                            params: code.params,
                            rest: code.rest,
                            slots: code.slots,
                            body: code.body.clone(),
                            loc: code.loc.clone(),
                        })))
                    }
                    _ => value,
                };
                Ok((*name, value))
            }
            [Value::List(signature), body @ ..] => match signature.first() {
                Some(Value::Symbol(name)) => {
                    let params = Value::List(signature.rest());
                    let code = self.lambda(Some(*name), &params, body, form)?;
                    Ok((*name, Rc::new(Expr::Lambda(code))))
                }
                _ => self.syntax("define needs a name", form),
            },
            _ => self.syntax(
                "define takes a name and a value, or (name params...) and a body",
                form,
            ),
        }
    }

    /// Parses `(a b &rest more)`.
    fn params(&self, params: &Value, form: &Value) -> Result<(Vec<Symbol>, Option<Symbol>), Value> {
        let Value::List(list) = params else {
            return self.syntax("the parameter list must be a list of symbols", form);
        };
        let items = list.to_vec();
        let mut names = Vec::new();
        let mut rest = None;
        let mut i = 0;
        while i < items.len() {
            match &items[i] {
                Value::Symbol(s) if s.name() == "&rest" => match &items[i + 1..] {
                    [Value::Symbol(r)] => {
                        rest = Some(*r);
                        break;
                    }
                    _ => return self.syntax("&rest must be followed by exactly one name", form),
                },
                Value::Symbol(s) => names.push(*s),
                _ => return self.syntax("parameters must be symbols", form),
            }
            i += 1;
        }
        Ok((names, rest))
    }

    fn lambda(
        &mut self,
        name: Option<Symbol>,
        params: &Value,
        body: &[Value],
        form: &Value,
    ) -> Result<Rc<LambdaCode>, Value> {
        let (names, rest) = self.params(params, form)?;
        let loc = self.loc(self.here);
        let mut slots: Vec<Option<Symbol>> = names.iter().map(|n| Some(*n)).collect();
        if let Some(r) = rest {
            slots.push(Some(r));
        }
        self.scopes.push(Scope { names: slots });
        let body = self.body(body);
        let scope = self.scopes.pop();
        let body = body?;
        Ok(Rc::new(LambdaCode {
            name,
            params: names.len(),
            rest: rest.is_some(),
            slots: scope.map_or(0, |s| s.names.len()),
            body,
            loc,
        }))
    }

    /// Expands a body in the innermost scope; its `define`s become slots of that scope.
    fn body(&mut self, forms: &[Value]) -> Expanded {
        // First find the definitions (expanding macros at the head so a macro can define).
        let mut flat = Vec::new();
        for f in forms {
            self.flatten_body_form(f, &mut flat)?;
        }
        for f in &flat {
            if let Some((name, _)) = Self::as_define(f) {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.names.push(Some(name));
                }
            }
        }
        let mut exprs = Vec::with_capacity(flat.len());
        for f in &flat {
            match Self::as_define(f) {
                Some((name, args)) => {
                    let (_, value) = self.definition(f, &args)?;
                    let (depth, index) = self.resolve_local(name).unwrap_or((0, 0));
                    exprs.push(Rc::new(Expr::SetLocal {
                        depth,
                        index,
                        value,
                    }));
                }
                None => exprs.push(self.expand(f)?),
            }
        }
        Ok(seq(exprs))
    }

    fn as_define(form: &Value) -> Option<(Symbol, Vec<Value>)> {
        let Value::List(items) = form else {
            return None;
        };
        if items.first() != Some(&Value::sym("define")) {
            return None;
        }
        let args = items.rest().to_vec();
        let name = match args.first()? {
            Value::Symbol(s) => *s,
            Value::List(sig) => sig.first()?.as_symbol()?,
            _ => return None,
        };
        Some((name, args))
    }

    /// Expands macros at the head of a body form and splices `begin`s, so definitions
    /// produced by macros are found.
    fn flatten_body_form(&mut self, form: &Value, out: &mut Vec<Value>) -> Result<(), Value> {
        let Value::List(items) = form else {
            out.push(form.clone());
            return Ok(());
        };
        if let Some(Value::Symbol(s)) = items.first() {
            if self.resolve_local(*s).is_none() {
                if s.name() == "begin" {
                    for f in items.rest().iter() {
                        self.flatten_body_form(f, out)?;
                    }
                    return Ok(());
                }
                if !is_special_form(s.name()) {
                    if let Some(mac @ Value::Macro(_)) = self.global_value(*s) {
                        if self.depth >= MAX_EXPANSION_DEPTH {
                            return self.syntax("macro expansion does not terminate", form);
                        }
                        self.depth += 1;
                        if let Some(pos) = self.sources.pos(items) {
                            self.here = Some(pos);
                        }
                        let expansion = self.host.call_macro(&mac, items.rest().to_vec());
                        let result = expansion.and_then(|e| {
                            self.locate_expansion(&e);
                            self.flatten_body_form(&e, out)
                        });
                        self.depth -= 1;
                        return result;
                    }
                }
            }
        }
        out.push(form.clone());
        Ok(())
    }

    fn bindings(&self, bindings: &Value, form: &Value) -> Result<Vec<(Symbol, Value)>, Value> {
        let Value::List(list) = bindings else {
            return self.syntax("let needs a list of (name value) bindings", form);
        };
        let mut out = Vec::new();
        for b in list.iter() {
            match b {
                Value::List(pair) if pair.len() == 2 => match pair.first() {
                    Some(Value::Symbol(s)) => {
                        out.push((*s, pair.nth(1).cloned().unwrap_or(Value::Nil)))
                    }
                    _ => return self.syntax("a let binding must start with a name", form),
                },
                _ => return self.syntax("each let binding must be a (name value) list", form),
            }
        }
        Ok(out)
    }

    fn let_form(&mut self, form: &Value, args: &[Value]) -> Expanded {
        match args {
            [Value::Symbol(loop_name), bindings, body @ ..] => {
                // Named let: a frame holding the loop function, called with the inits.
                let bindings = self.bindings(bindings, form)?;
                self.scopes.push(Scope { names: vec![None] });
                let inits: Result<Vec<ExprRef>, Value> =
                    bindings.iter().map(|(_, v)| self.expand(v)).collect();
                if let Some(scope) = self.scopes.last_mut() {
                    scope.names[0] = Some(*loop_name);
                }
                let params = Value::list(bindings.iter().map(|(n, _)| Value::Symbol(*n)).collect());
                let code = inits.and_then(|inits| {
                    self.lambda(Some(*loop_name), &params, body, form)
                        .map(|code| (inits, code))
                });
                self.scopes.pop();
                let (inits, code) = code?;
                let mut items = vec![Rc::new(Expr::Local { depth: 0, index: 0 })];
                items.extend(inits);
                let body = Rc::new(Expr::Seq(vec![
                    Rc::new(Expr::SetLocal {
                        depth: 0,
                        index: 0,
                        value: Rc::new(Expr::Lambda(code)),
                    }),
                    Rc::new(Expr::Call {
                        items,
                        loc: self.loc(self.here),
                    }),
                ]));
                Ok(Rc::new(Expr::Let {
                    inits: vec![],
                    slots: 1,
                    body,
                }))
            }
            [bindings, body @ ..] => {
                let bindings = self.bindings(bindings, form)?;
                let inits = self.expand_all(bindings.iter().map(|(_, v)| v))?;
                self.scoped_body(
                    bindings.iter().map(|(n, _)| Some(*n)).collect(),
                    inits,
                    body,
                )
            }
            _ => self.syntax("let needs a binding list", form),
        }
    }

    fn scoped_body(
        &mut self,
        names: Vec<Option<Symbol>>,
        inits: Vec<ExprRef>,
        body: &[Value],
    ) -> Expanded {
        self.scopes.push(Scope { names });
        let body = self.body(body);
        let scope = self.scopes.pop();
        Ok(Rc::new(Expr::Let {
            inits,
            slots: scope.map_or(0, |s| s.names.len()),
            body: body?,
        }))
    }

    fn letrec(&mut self, form: &Value, args: &[Value]) -> Expanded {
        let [bindings, body @ ..] = args else {
            return self.syntax("letrec needs a binding list", form);
        };
        let bindings = self.bindings(bindings, form)?;
        self.scopes.push(Scope {
            names: bindings.iter().map(|(n, _)| Some(*n)).collect(),
        });
        let result = (|| {
            let mut exprs = Vec::new();
            for (i, (name, v)) in bindings.iter().enumerate() {
                let value = self.definition(form, &[Value::Symbol(*name), v.clone()])?.1;
                exprs.push(Rc::new(Expr::SetLocal {
                    depth: 0,
                    index: i,
                    value,
                }));
            }
            exprs.push(self.body(body)?);
            Ok(seq(exprs))
        })();
        let scope = self.scopes.pop();
        Ok(Rc::new(Expr::Let {
            inits: vec![],
            slots: scope.map_or(0, |s| s.names.len()),
            body: result?,
        }))
    }

    fn cond(&mut self, form: &Value, clauses: &[Value]) -> Expanded {
        let mut result = konst(Value::Nil);
        for (i, clause) in clauses.iter().enumerate().rev() {
            let Value::List(parts) = clause else {
                return self.syntax("each cond clause must be a list (test body...)", form);
            };
            let Some(test) = parts.first() else {
                return self.syntax("an empty cond clause", form);
            };
            let body: Vec<Value> = parts.rest().to_vec();
            if *test == Value::sym("else") {
                if i != clauses.len() - 1 {
                    return self.syntax("else must be the last cond clause", form);
                }
                result = seq(self.expand_all(body.iter())?);
                continue;
            }
            let test = self.expand(test)?;
            result = if body.is_empty() {
                and_or(false, vec![test, result])
            } else {
                Rc::new(Expr::If(test, seq(self.expand_all(body.iter())?), result))
            };
        }
        Ok(result)
    }

    fn case(&mut self, form: &Value, args: &[Value]) -> Expanded {
        let Some((key, clauses)) = args.split_first() else {
            return self.syntax("case needs a key expression", form);
        };
        let key = self.expand(key)?;
        self.scopes.push(Scope { names: vec![None] });
        let result = (|| {
            let mut result = konst(Value::Nil);
            for (i, clause) in clauses.iter().enumerate().rev() {
                let Value::List(parts) = clause else {
                    return self.syntax("each case clause must be a list (datums body...)", form);
                };
                let Some(data) = parts.first() else {
                    return self.syntax("an empty case clause", form);
                };
                let body = seq(self.expand_all(parts.rest().iter())?);
                if *data == Value::sym("else") {
                    if i != clauses.len() - 1 {
                        return self.syntax("else must be the last case clause", form);
                    }
                    result = body;
                    continue;
                }
                let data = match data {
                    Value::List(items) => items.to_vec(),
                    other => vec![other.clone()],
                };
                let tests: Vec<ExprRef> = data
                    .iter()
                    .map(|d| {
                        self.library_call(
                            "=",
                            vec![Rc::new(Expr::Local { depth: 0, index: 0 }), konst(datum(d))],
                        )
                    })
                    .collect();
                // `()` lists no datum: `(or)`, never true, so the clause never matches.
                result = Rc::new(Expr::If(and_or(false, tests), body, result));
            }
            Ok(result)
        })();
        self.scopes.pop();
        Ok(Rc::new(Expr::Let {
            inits: vec![key],
            slots: 1,
            body: result?,
        }))
    }

    fn defcomp(&mut self, form: &Value, args: &[Value]) -> Expanded {
        if !self.scopes.is_empty() {
            return self.syntax("defcomp is allowed only at the top level", form);
        }
        let [Value::Symbol(name), Value::List(params), body @ ..] = args else {
            return self.syntax(
                "defcomp takes a ~name, a (&key ...) parameter list and a body",
                form,
            );
        };
        if !name.name().starts_with('~') {
            return self.syntax("component names start with ~", form);
        }
        let mut keys = Vec::new();
        let mut iter = params.iter();
        match iter.next() {
            None => {}
            Some(Value::Symbol(s)) if s.name() == "&key" => {}
            Some(_) => return self.syntax("component parameters start with &key", form),
        }
        for p in iter {
            match p {
                Value::Symbol(s) if s.name() != "children" => keys.push(*s),
                Value::Symbol(_) => {}
                _ => return self.syntax("component parameters must be symbols", form),
            }
        }
        let mut all: Vec<Value> = keys.iter().map(|k| Value::Symbol(*k)).collect();
        all.push(Value::sym("children"));
        let code = self.lambda(Some(*name), &Value::list(all), body, form)?;
        let global = self.assignable(*name, form)?;
        self.define_global(*name, Expr::DefComp { global, keys, code })
    }

    fn guard(&mut self, form: &Value, args: &[Value]) -> Expanded {
        let [Value::List(spec), body @ ..] = args else {
            return self.syntax("guard takes (var clause...) and a body", form);
        };
        let Some(Value::Symbol(var)) = spec.first() else {
            return self.syntax(
                "guard needs a variable: (guard (e clause...) body...)",
                form,
            );
        };
        let var = *var;
        let body = seq(self.expand_all(body.iter())?);
        let mut clauses: Vec<Value> = spec.rest().to_vec();
        let has_else = clauses.last().is_some_and(|c| match c {
            Value::List(l) => l.first() == Some(&Value::sym("else")),
            _ => false,
        });
        if !has_else {
            // No clause matched: re-raise the same value.
            clauses.push(Value::list(vec![
                Value::sym("else"),
                Value::list(vec![
                    Value::Symbol(library_name(Symbol::new("raise"))),
                    Value::Symbol(var),
                ]),
            ]));
        }
        self.scopes.push(Scope {
            names: vec![Some(var)],
        });
        let handler = self.cond(form, &clauses);
        self.scopes.pop();
        Ok(Rc::new(Expr::Guard {
            body,
            handler: handler?,
        }))
    }

    fn quasi(&mut self, x: &Value, level: usize) -> Expanded {
        let Value::List(items) = x else {
            return Ok(konst(datum(x)));
        };
        let head = items.first().and_then(Value::as_symbol).map(|s| s.name());
        match head {
            Some("unquote") if items.len() == 2 => {
                let arg = items.nth(1).cloned().unwrap_or(Value::Nil);
                if level == 1 {
                    return self.expand(&arg);
                }
                let inner = self.quasi(&arg, level - 1)?;
                return Ok(self.library_call("list", vec![konst(Value::sym("unquote")), inner]));
            }
            Some("quasiquote") if items.len() == 2 => {
                let arg = items.nth(1).cloned().unwrap_or(Value::Nil);
                let inner = self.quasi(&arg, level + 1)?;
                return Ok(self.library_call("list", vec![konst(Value::sym("quasiquote")), inner]));
            }
            _ => {}
        }
        if items.first() == Some(&Value::Symbol(dict_literal_head())) {
            let parts = self.quasi_items(&items.rest(), level)?;
            return Ok(self.library_call("%dict-from-list", vec![parts]));
        }
        self.quasi_items(items, level)
    }

    /// A list under quasiquote: an append of segments, one per element or splice.
    fn quasi_items(&mut self, items: &List, level: usize) -> Expanded {
        let mut segments: Vec<ExprRef> = Vec::new();
        let mut pending: Vec<ExprRef> = Vec::new();
        for item in items.iter() {
            if let Value::List(inner) = item {
                if inner.len() == 2 && inner.first() == Some(&Value::sym("unquote-splicing")) {
                    let arg = inner.nth(1).cloned().unwrap_or(Value::Nil);
                    if level == 1 {
                        if !pending.is_empty() {
                            segments.push(Rc::new(Expr::MakeList(std::mem::take(&mut pending))));
                        }
                        segments.push(self.expand(&arg)?);
                        continue;
                    }
                    let inner = self.quasi(&arg, level - 1)?;
                    pending.push(
                        self.library_call(
                            "list",
                            vec![konst(Value::sym("unquote-splicing")), inner],
                        ),
                    );
                    continue;
                }
            }
            pending.push(self.quasi(item, level)?);
        }
        if segments.is_empty() {
            return Ok(Rc::new(Expr::MakeList(pending)));
        }
        if !pending.is_empty() {
            segments.push(Rc::new(Expr::MakeList(pending)));
        }
        Ok(self.library_call("%splice", segments))
    }
}
