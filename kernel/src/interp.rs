//! The reference interpreter: a CEK machine over [`Expr`].
//!
//! Control is an expression to evaluate, a value to return or a value being raised; the
//! continuation is an explicit `Vec<Kont>`. No Rust recursion happens per SX call, so tail
//! calls are proper (a call whose continuation top is the caller's own [`Kont::Call`] frame
//! replaces it), deep recursion ends in a clean `stack-overflow`, and the machine can stop at
//! a `perform` and be resumed later by the host.

use std::cell::RefCell;
use std::rc::Rc;

use crate::call::{call_native, component_args, NativeCall};
use crate::engine::{Engine, Step, Test};
use crate::error::{arity_error, syntax_error, type_error, ErrorValue, StackEntry};
use crate::expander::{Expr, ExprRef, LambdaCode, SrcLoc};
use crate::value::{Closure, Component, Dict, Key, List, Value};

/// A frame of local variables; closures keep the chain they were created in.
pub struct Frame {
    pub slots: RefCell<Vec<Value>>,
    pub parent: Env,
}

pub type Env = Option<Rc<Frame>>;

/// The interpreter's code for a closure: the expanded lambda and the environment it was
/// created in.
struct InterpCode {
    lambda: Rc<LambdaCode>,
    env: Env,
}

fn interp_closure(lambda: &Rc<LambdaCode>, env: Env) -> Closure {
    Closure {
        name: lambda.name,
        code: Rc::new(InterpCode {
            lambda: lambda.clone(),
            env,
        }),
        captures: Box::new([]),
    }
}

fn frame_at(env: &Env, depth: usize) -> &Rc<Frame> {
    let mut f = env
        .as_ref()
        .expect("the expander resolved a local outside any frame");
    for _ in 0..depth {
        f = f
            .parent
            .as_ref()
            .expect("the expander resolved a local too deep");
    }
    f
}

fn new_frame(mut slots: Vec<Value>, size: usize, parent: Env) -> Env {
    slots.resize(size, Value::Nil);
    Some(Rc::new(Frame {
        slots: RefCell::new(slots),
        parent,
    }))
}

enum Kont {
    If(ExprRef, Env),
    Seq(ExprRef, usize, Env),
    AndOr(ExprRef, usize, Env),
    /// Evaluating the children of a call, list, dict, element or let: `vals` so far.
    Collect(ExprRef, Vec<Value>, Env),
    SetLocal(ExprRef, Env),
    SetGlobal(ExprRef),
    Define(ExprRef),
    Guard(ExprRef, Env),
    /// A function body is running: the unit of stack depth and of stack traces.
    Call {
        name: &'static str,
        loc: Option<Rc<SrcLoc>>,
    },
    Perform,
    /// `call-with-fuel`: restores the outer budget, minus what was used, on exit.
    Fuel {
        outer: Option<u64>,
        granted: u64,
    },
}

enum Ctl {
    Eval(ExprRef, Env),
    Return(Value),
    Raise(Value),
    Apply(Value, Vec<Value>, Option<Rc<SrcLoc>>),
}

pub struct Machine {
    ctl: Option<Ctl>,
    konts: Vec<Kont>,
    depth: usize,
    fuel: Option<u64>,
    max_depth: usize,
    /// Set when the machine stops at a `perform`.
    pending_request: Option<Value>,
}

impl Machine {
    pub fn new(expr: ExprRef, fuel: Option<u64>, max_depth: usize) -> Machine {
        Machine {
            ctl: Some(Ctl::Eval(expr, None)),
            konts: Vec::new(),
            depth: 0,
            fuel,
            max_depth,
            pending_request: None,
        }
    }

    /// A machine that applies `f` to `args`.
    pub fn apply(f: Value, args: Vec<Value>, fuel: Option<u64>, max_depth: usize) -> Machine {
        Machine {
            ctl: Some(Ctl::Apply(f, args, None)),
            konts: Vec::new(),
            depth: 0,
            fuel,
            max_depth,
            pending_request: None,
        }
    }

    pub fn fuel(&self) -> Option<u64> {
        self.fuel
    }

    /// Continues after a `perform`: with the host's answer or an error raised at the site.
    pub fn resume(&mut self, answer: Result<Value, Value>) {
        self.ctl = Some(match answer {
            Ok(v) => Ctl::Return(v),
            Err(e) => Ctl::Raise(e),
        });
    }

    fn stack_trace(&self) -> Vec<StackEntry> {
        self.konts
            .iter()
            .rev()
            .filter_map(|k| match k {
                Kont::Call { name, loc } => Some(StackEntry {
                    name: Rc::from(*name),
                    file: loc.as_ref().and_then(|l| l.file.clone()),
                    pos: loc.as_ref().map(|l| l.pos),
                }),
                _ => None,
            })
            .collect()
    }

    /// Starts raising `v`; an error value raised for the first time records the SX stack,
    /// with `site` (a native and its call site) on top when given.
    fn raise(&mut self, v: Value, site: Option<(&str, &Option<Rc<SrcLoc>>)>) -> Ctl {
        if let Value::Error(e) = &v {
            let mut stack = e.stack.borrow_mut();
            if stack.is_empty() {
                if let Some((name, loc)) = site {
                    stack.push(StackEntry {
                        name: Rc::from(name),
                        file: loc.as_ref().and_then(|l| l.file.clone()),
                        pos: loc.as_ref().map(|l| l.pos),
                    });
                }
                stack.extend(self.stack_trace());
            }
        }
        Ctl::Raise(v)
    }

    /// Runs until the machine finishes, fails, or performs.
    pub fn run(&mut self, engine: &mut Engine) -> Step {
        let Some(mut ctl) = self.ctl.take() else {
            return Step::Error(type_error("the machine already finished", vec![]));
        };
        loop {
            let next = match ctl {
                Ctl::Eval(expr, env) => {
                    if let Some(fuel) = &mut self.fuel {
                        if *fuel == 0 {
                            let err = crate::error::out_of_fuel();
                            ctl = self.raise(err, None);
                            continue;
                        }
                        *fuel -= 1;
                    }
                    self.eval(expr, env, engine)
                }
                Ctl::Return(v) => match self.konts.pop() {
                    None => return Step::Done(v),
                    Some(k) => self.continue_with(k, v),
                },
                Ctl::Apply(f, args, loc) => self.apply_value(f, args, loc, engine),
                Ctl::Raise(v) => match self.unwind(v) {
                    Ok(next) => Some(next),
                    Err(v) => return Step::Error(v),
                },
            };
            match next {
                Some(next) => ctl = next,
                None => {
                    // Only a perform stops the loop without a value.
                    let request = self.pending_request.take().unwrap_or(Value::Nil);
                    return Step::Perform(request);
                }
            }
        }
    }
}

impl Machine {
    fn eval(&mut self, expr: ExprRef, env: Env, engine: &mut Engine) -> Option<Ctl> {
        Some(match &*expr {
            Expr::Const(v) => Ctl::Return(v.clone()),
            Expr::Local { depth, index } => {
                Ctl::Return(frame_at(&env, *depth).slots.borrow()[*index].clone())
            }
            Expr::Global { global, loc } => match &*global.value.borrow() {
                Some(v) => Ctl::Return(v.clone()),
                None => {
                    let err = crate::error::unbound_variable(global.name, false);
                    self.raise(err, Some((global.name.name(), loc)))
                }
            },
            Expr::CallOrElement {
                global,
                call,
                element,
            } => {
                let chosen = if global.value.borrow().is_some() {
                    call
                } else {
                    element
                };
                Ctl::Eval(chosen.clone(), env)
            }
            Expr::SetLocal { value, .. } => {
                let value = value.clone();
                self.konts.push(Kont::SetLocal(expr, env.clone()));
                Ctl::Eval(value, env)
            }
            Expr::SetGlobal { value, .. } => {
                let value = value.clone();
                self.konts.push(Kont::SetGlobal(expr));
                Ctl::Eval(value, env)
            }
            Expr::Define { value, .. } => {
                let value = value.clone();
                self.konts.push(Kont::Define(expr));
                Ctl::Eval(value, env)
            }
            Expr::If(c, _, _) => {
                let c = c.clone();
                self.konts.push(Kont::If(expr, env.clone()));
                Ctl::Eval(c, env)
            }
            Expr::Seq(items) | Expr::And(items) | Expr::Or(items) => {
                let Some(first) = items.first().cloned() else {
                    return Some(Ctl::Return(expr.empty_value()));
                };
                let k = if matches!(&*expr, Expr::Seq(_)) {
                    Kont::Seq(expr, 1, env.clone())
                } else {
                    Kont::AndOr(expr, 1, env.clone())
                };
                self.konts.push(k);
                Ctl::Eval(first, env)
            }
            Expr::Lambda(code) => Ctl::Return(Value::Fn(Rc::new(interp_closure(code, env)))),
            Expr::Call { items, .. }
            | Expr::MakeList(items)
            | Expr::MakeDict(items)
            | Expr::MakeElement { items, .. }
            | Expr::Let { inits: items, .. } => match items.first() {
                Some(first) => {
                    let first = first.clone();
                    let capacity = items.len();
                    self.konts.push(Kont::Collect(
                        expr.clone(),
                        Vec::with_capacity(capacity),
                        env.clone(),
                    ));
                    Ctl::Eval(first, env)
                }
                None => return self.collected(expr, Vec::new(), env),
            },
            Expr::Guard { body, .. } => {
                let body = body.clone();
                self.konts.push(Kont::Guard(expr, env.clone()));
                Ctl::Eval(body, env)
            }
            Expr::Perform { request, .. } => {
                let request = request.clone();
                self.konts.push(Kont::Perform);
                Ctl::Eval(request, env)
            }
            Expr::DefMacro { global, code } => {
                let closure = Rc::new(interp_closure(code, env));
                global.set(Value::Macro(closure));
                Ctl::Return(Value::Nil)
            }
            Expr::DefComp { global, keys, code } => {
                let closure = Rc::new(interp_closure(code, env));
                global.set(Value::Component(Rc::new(Component {
                    name: global.name,
                    keys: keys.clone(),
                    closure,
                })));
                Ctl::Return(Value::Nil)
            }
            Expr::DefTest { name, code, loc } => {
                engine.tests.push(Test {
                    name: name.clone(),
                    thunk: Value::Fn(Rc::new(interp_closure(code, env))),
                    loc: loc.clone(),
                });
                Ctl::Return(Value::Nil)
            }
        })
    }

    /// All children of a collecting node are evaluated.
    fn collected(&mut self, node: ExprRef, vals: Vec<Value>, env: Env) -> Option<Ctl> {
        Some(match &*node {
            Expr::Call { loc, .. } => {
                let mut vals = vals.into_iter();
                let Some(f) = vals.next() else {
                    let err = syntax_error("internal: a call without a function", vec![]);
                    return Some(self.raise(err, None));
                };
                Ctl::Apply(f, vals.collect(), loc.clone())
            }
            Expr::MakeList(_) => Ctl::Return(Value::List(List::from(vals))),
            Expr::MakeElement { tag, .. } => Ctl::Return(Value::List(List::from_iter_with_tail(
                std::iter::once(Value::Symbol(*tag)).chain(vals),
                List::empty(),
            ))),
            Expr::MakeDict(_) => {
                let mut dict = Dict::new();
                let mut it = vals.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if k.is_function() {
                        let err = type_error("a function cannot be a dict key", vec![k]);
                        return Some(self.raise(err, None));
                    }
                    dict.insert(Key(k), v);
                }
                Ctl::Return(Value::Dict(dict))
            }
            Expr::Let { slots, body, .. } => {
                let env = new_frame(vals, *slots, env);
                Ctl::Eval(body.clone(), env)
            }
            _ => unreachable!("only collecting nodes reach collected()"),
        })
    }

    fn continue_with(&mut self, k: Kont, v: Value) -> Option<Ctl> {
        Some(match k {
            Kont::If(node, env) => {
                let Expr::If(_, then, otherwise) = &*node else {
                    unreachable!()
                };
                Ctl::Eval(if v.is_truthy() { then } else { otherwise }.clone(), env)
            }
            Kont::Seq(node, i, env) => {
                let Expr::Seq(items) = &*node else {
                    unreachable!()
                };
                let next = items[i].clone();
                if i + 1 < items.len() {
                    self.konts.push(Kont::Seq(node.clone(), i + 1, env.clone()));
                }
                Ctl::Eval(next, env)
            }
            Kont::AndOr(node, i, env) => {
                let (items, is_and) = match &*node {
                    Expr::And(items) => (items, true),
                    Expr::Or(items) => (items, false),
                    _ => unreachable!(),
                };
                if v.is_truthy() != is_and {
                    return Some(Ctl::Return(v));
                }
                let next = items[i].clone();
                if i + 1 < items.len() {
                    self.konts
                        .push(Kont::AndOr(node.clone(), i + 1, env.clone()));
                }
                Ctl::Eval(next, env)
            }
            Kont::Collect(node, mut vals, env) => {
                vals.push(v);
                let items = match &*node {
                    Expr::Call { items, .. }
                    | Expr::MakeList(items)
                    | Expr::MakeDict(items)
                    | Expr::MakeElement { items, .. }
                    | Expr::Let { inits: items, .. } => items,
                    _ => unreachable!(),
                };
                if vals.len() < items.len() {
                    let next = items[vals.len()].clone();
                    self.konts.push(Kont::Collect(node, vals, env.clone()));
                    Ctl::Eval(next, env)
                } else {
                    return self.collected(node, vals, env);
                }
            }
            Kont::SetLocal(node, env) => {
                let Expr::SetLocal { depth, index, .. } = &*node else {
                    unreachable!()
                };
                frame_at(&env, *depth).slots.borrow_mut()[*index] = v;
                Ctl::Return(Value::Nil)
            }
            Kont::SetGlobal(node) => {
                let Expr::SetGlobal { global, .. } = &*node else {
                    unreachable!()
                };
                if !global.is_bound() {
                    let err = crate::error::unbound_variable(global.name, true);
                    return Some(self.raise(err, None));
                }
                global.set(v);
                Ctl::Return(Value::Nil)
            }
            Kont::Define(node) => {
                let Expr::Define { global, .. } = &*node else {
                    unreachable!()
                };
                global.set(v);
                Ctl::Return(Value::Nil)
            }
            Kont::Guard(..) => Ctl::Return(v),
            Kont::Call { .. } => {
                self.depth -= 1;
                Ctl::Return(v)
            }
            Kont::Perform => {
                self.pending_request = Some(v);
                return None;
            }
            Kont::Fuel { outer, granted } => {
                self.restore_fuel(outer, granted);
                Ctl::Return(v)
            }
        })
    }

    fn restore_fuel(&mut self, outer: Option<u64>, granted: u64) {
        let used = granted.saturating_sub(self.fuel.unwrap_or(0));
        self.fuel = outer.map(|o| o.saturating_sub(used));
    }

    /// Pops continuations up to the nearest guard; `Err` when none catches `v`.
    fn unwind(&mut self, v: Value) -> Result<Ctl, Value> {
        while let Some(k) = self.konts.pop() {
            match k {
                Kont::Call { .. } => self.depth -= 1,
                Kont::Fuel { outer, granted } => self.restore_fuel(outer, granted),
                Kont::Guard(node, env) => {
                    let Expr::Guard { handler, .. } = &*node else {
                        unreachable!()
                    };
                    return Ok(Ctl::Eval(handler.clone(), new_frame(vec![v], 1, env)));
                }
                _ => {}
            }
        }
        Err(v)
    }

    /// Enters a function body: a tail call replaces the caller's frame, any other call
    /// pushes one (and may overflow the configured depth).
    fn enter(&mut self, name: &'static str, loc: Option<Rc<SrcLoc>>) -> Result<(), Value> {
        if let Some(Kont::Call { .. }) = self.konts.last() {
            self.konts.pop();
            self.depth -= 1;
        }
        if self.depth >= self.max_depth {
            return Err(ErrorValue::value(
                "stack-overflow",
                format!("stack deeper than {} frames", self.max_depth),
                vec![],
            ));
        }
        self.depth += 1;
        self.konts.push(Kont::Call { name, loc });
        Ok(())
    }

    fn call_closure(
        &mut self,
        closure: &Closure,
        args: Vec<Value>,
        loc: Option<Rc<SrcLoc>>,
    ) -> Ctl {
        let Some(InterpCode { lambda: code, env }) = closure.code.downcast_ref::<InterpCode>()
        else {
            let err = type_error("a bytecode function cannot run on the interpreter", vec![]);
            return self.raise(err, None);
        };
        let code: &LambdaCode = code;
        let name = code.name.map_or("fn", |n| n.name());
        let n = args.len();
        if n < code.params || (!code.rest && n > code.params) {
            let expected = if code.rest {
                format!("at least {}", code.params)
            } else {
                code.params.to_string()
            };
            let err = arity_error(
                format!("{name} takes {expected} argument(s), got {n}"),
                vec![Value::Int(n as i64)],
            );
            return self.raise(err, Some((name, &loc)));
        }
        let mut slots = args;
        if code.rest {
            let rest: Vec<Value> = slots.split_off(code.params);
            slots.push(Value::List(List::from(rest)));
        }
        if let Err(err) = self.enter(name, loc) {
            return self.raise(err, None);
        }
        Ctl::Eval(code.body.clone(), new_frame(slots, code.slots, env.clone()))
    }

    fn apply_value(
        &mut self,
        f: Value,
        args: Vec<Value>,
        loc: Option<Rc<SrcLoc>>,
        engine: &mut Engine,
    ) -> Option<Ctl> {
        Some(match f {
            Value::Fn(closure) => self.call_closure(&closure, args, loc),
            Value::Component(comp) => match component_args(&comp, args) {
                Ok(slots) => self.call_closure(&comp.closure, slots, loc),
                Err(err) => self.raise(err, Some((comp.name.name(), &loc))),
            },
            Value::Native(native) => match call_native(&native, &args, engine) {
                NativeCall::Return(v) => Ctl::Return(v),
                NativeCall::Raise(err, site) => self.raise(err, Some((site, &loc))),
                NativeCall::Apply(f, args) => Ctl::Apply(f, args, loc),
                NativeCall::Eval(form) => {
                    let mut sources = crate::reader::SourceMap::default();
                    match engine.expand(&form, &mut sources, None) {
                        Ok(expr) => Ctl::Eval(expr, None),
                        Err(err) => self.raise(err, Some(("eval", &loc))),
                    }
                }
                NativeCall::WithFuel(budget, thunk) => {
                    let outer = self.fuel;
                    let granted = outer.map_or(budget, |o| o.min(budget));
                    self.fuel = Some(granted);
                    self.konts.push(Kont::Fuel { outer, granted });
                    Ctl::Apply(thunk, vec![], loc)
                }
            },
            other => {
                let err = ErrorValue::value(
                    "not-callable",
                    format!("{} is not callable", crate::printer::repr(&other)),
                    vec![other],
                );
                self.raise(err, None)
            }
        })
    }
}
