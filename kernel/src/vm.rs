//! The bytecode VM: the fast engine. Same semantics as the interpreter (the conformance
//! suite runs on both and compares), same `Step` protocol for hosts.
//!
//! One value stack holds every frame's locals and operands; `frames` records where each
//! function's slots start and where to resume. A tail call reuses the caller's frame.
//! Guards are entries in `handlers` (frame count, stack height, handler address). Nothing
//! here recurses in Rust per SX call, and no input — not even a damaged program — makes it
//! index out of bounds: every access that the loader cannot prove is checked.

use std::cell::RefCell;
use std::rc::Rc;

use crate::bytecode::{Op, Prim, Proto};
use crate::call::{call_native, component_args, NativeCall};
use crate::engine::{Engine, Step, Test};
use crate::error::{arity_error, type_error, ErrorValue, StackEntry};
use crate::expander::SrcLoc;
use crate::value::{Closure, Component, Dict, Key, List, Native, NativeKind, Value};

struct Frame {
    proto: Rc<Proto>,
    /// A closure's frame (its closure sits at `base - 1`); false for a top-level form or an
    /// `eval` (no captures, not shown in stack traces).
    is_closure: bool,
    ip: usize,
    /// Index of slot 0; the callee value sits just below it.
    base: usize,
    /// `call-with-fuel`: the outer budget and what was granted, restored on exit.
    fuel_restore: Option<(Option<u64>, u64)>,
}

struct Handler {
    frames: usize,
    stack: usize,
    target: usize,
}

pub struct Machine {
    stack: Vec<Value>,
    frames: Vec<Frame>,
    handlers: Vec<Handler>,
    fuel: Option<u64>,
    max_depth: usize,
    /// The host's answer to a `perform`, applied when the machine runs again.
    resume_with: Option<Result<Value, Value>>,
    /// A machine made by `apply` must make its first call when it first runs.
    pending_call: Option<usize>,
    done: bool,
}

/// The VM's code of a closure; `None` for the interpreter's.
#[inline(always)]
fn vm_proto(closure: &Closure) -> Option<Rc<Proto>> {
    closure.code.clone().downcast::<Proto>().ok()
}

fn corrupt(what: &str) -> Value {
    ErrorValue::value("type-error", format!("damaged bytecode: {what}"), vec![])
}

/// What a native call leaves its caller to do.
enum NativeFlow {
    Flow(Flow),
    /// `apply`: call the function now on the stack with this many arguments (in the same
    /// tail position as the `apply`).
    CallAgain(usize),
}

enum Flow {
    /// Keep running the current frame (reload it if `true`).
    Next(bool),
    Stop(Step),
}

impl Machine {
    /// A machine that runs a compiled top-level form.
    pub fn new(proto: Rc<Proto>, fuel: Option<u64>, max_depth: usize) -> Machine {
        let mut stack = vec![Value::Nil];
        stack.resize(1 + proto.slots as usize, Value::Nil);
        Machine {
            stack,
            frames: vec![Frame {
                proto,
                is_closure: false,
                ip: 0,
                base: 1,
                fuel_restore: None,
            }],
            handlers: Vec::new(),
            fuel,
            max_depth,
            resume_with: None,
            pending_call: None,
            done: false,
        }
    }

    /// A machine that applies `f` to `args`.
    pub fn apply(f: Value, args: Vec<Value>, fuel: Option<u64>, max_depth: usize) -> Machine {
        let argc = args.len();
        let mut stack = Vec::with_capacity(argc + 16);
        stack.push(f);
        stack.extend(args);
        Machine {
            stack,
            frames: Vec::new(),
            handlers: Vec::new(),
            fuel,
            max_depth,
            resume_with: None,
            pending_call: Some(argc),
            done: false,
        }
    }

    pub fn fuel(&self) -> Option<u64> {
        self.fuel
    }

    pub fn resume(&mut self, answer: Result<Value, Value>) {
        self.resume_with = Some(answer);
    }

    /// Truncates the stack; plain values (numbers, booleans, nil) are dropped without a call.
    #[inline(always)]
    fn shrink_stack(&mut self, len: usize) {
        while self.stack.len() > len {
            match self.stack.pop() {
                Some(v @ (Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_))) => {
                    std::mem::forget(v)
                }
                other => drop(other),
            }
        }
    }

    /// The values from `from` to the top as a list before `tail`, popped from the top down:
    /// no intermediate vector.
    fn pop_list(&mut self, from: usize, mut tail: List) -> List {
        while self.stack.len() > from {
            tail = List::cons(self.pop(), tail);
        }
        tail
    }

    fn pop(&mut self) -> Value {
        self.stack.pop().unwrap_or(Value::Nil)
    }

    /// The SX stack, innermost first: each function and the place it was called from.
    fn stack_trace(&self) -> Vec<StackEntry> {
        let mut out = Vec::new();
        for (i, frame) in self.frames.iter().enumerate().rev() {
            if !frame.is_closure {
                continue;
            }
            let (file, pos) = match i.checked_sub(1).and_then(|c| self.frames.get(c)) {
                Some(caller) => (
                    caller.proto.file.clone(),
                    caller.proto.pos_at(caller.ip.saturating_sub(1)),
                ),
                None => (None, None),
            };
            out.push(StackEntry {
                name: Rc::from(frame.proto.display_name()),
                file,
                pos,
            });
        }
        out
    }

    fn here_loc(&self) -> (Option<Rc<str>>, Option<crate::value::Pos>) {
        match self.frames.last() {
            Some(f) => (f.proto.file.clone(), f.proto.pos_at(f.ip.saturating_sub(1))),
            None => (None, None),
        }
    }

    /// Raises `v`: records the SX stack on a fresh error, then unwinds to the nearest guard.
    fn throw(&mut self, v: Value, site: Option<&str>) -> Flow {
        if let Value::Error(e) = &v {
            let mut stack = e.stack.borrow_mut();
            if stack.is_empty() {
                if let Some(name) = site {
                    let (file, pos) = self.here_loc();
                    stack.push(StackEntry {
                        name: Rc::from(name),
                        file,
                        pos,
                    });
                }
                stack.extend(self.stack_trace());
            }
        }
        // Raising costs fuel: damaged code could loop through a handler.
        let exhausted =
            !self.spend_fuel() && !matches!(&v, Value::Error(e) if &*e.error_type == "out-of-fuel");
        let v = if exhausted {
            crate::error::out_of_fuel()
        } else {
            v
        };
        // Find a handler that can run: with the budget exhausted, only a handler outside the
        // `call-with-fuel` that ran out (whose budget is restored on the way) may catch.
        loop {
            let Some(handler) = self.handlers.pop() else {
                while let Some(frame) = self.frames.pop() {
                    if let Some((outer, granted)) = frame.fuel_restore {
                        self.restore_fuel(outer, granted);
                    }
                }
                self.done = true;
                return Flow::Stop(Step::Error(v));
            };
            while self.frames.len() > handler.frames {
                if let Some(frame) = self.frames.pop() {
                    if let Some((outer, granted)) = frame.fuel_restore {
                        self.restore_fuel(outer, granted);
                    }
                }
            }
            if self.fuel == Some(0) {
                continue;
            }
            self.stack.truncate(handler.stack);
            self.stack.push(v);
            if let Some(frame) = self.frames.last_mut() {
                frame.ip = handler.target;
            }
            return Flow::Next(true);
        }
    }

    fn restore_fuel(&mut self, outer: Option<u64>, granted: u64) {
        let used = granted.saturating_sub(self.fuel.unwrap_or(0));
        self.fuel = outer.map(|o| o.saturating_sub(used));
    }

    fn spend_fuel(&mut self) -> bool {
        match &mut self.fuel {
            Some(0) => false,
            Some(f) => {
                *f -= 1;
                true
            }
            None => true,
        }
    }

    /// Returns from the current frame with `result`.
    fn do_return(&mut self, result: Value) -> Flow {
        let Some(frame) = self.frames.pop() else {
            self.done = true;
            return Flow::Stop(Step::Done(result));
        };
        if let Some((outer, granted)) = frame.fuel_restore {
            self.restore_fuel(outer, granted);
        }
        self.stack.truncate(frame.base.saturating_sub(1));
        if self.frames.is_empty() {
            self.done = true;
            return Flow::Stop(Step::Done(result));
        }
        self.stack.push(result);
        Flow::Next(true)
    }

    /// Calls the value `argc + 1` slots from the top with the `argc` values above it.
    fn call(&mut self, mut argc: usize, tail: bool, engine: &mut Engine) -> Flow {
        // A loop, not recursion: `apply` of `apply` of ... (as deep as data can nest) calls
        // again here without growing the Rust stack.
        loop {
            let Some(at) = self.stack.len().checked_sub(argc + 1) else {
                return self.throw(corrupt("call without a function"), None);
            };
            let f = self.stack[at].clone();
            return match &f {
                Value::Fn(closure) => self.enter(closure, at, argc, tail),
                Value::Component(comp) => self.call_component(comp, at, argc, tail),
                Value::Native(native) => match self.call_native(native, at, engine) {
                    NativeFlow::Flow(flow) => flow,
                    NativeFlow::CallAgain(n) => {
                        argc = n;
                        continue;
                    }
                },
                other => {
                    let err = ErrorValue::value(
                        "not-callable",
                        format!("{} is not callable", crate::printer::repr(other)),
                        vec![other.clone()],
                    );
                    self.throw(err, None)
                }
            };
        }
    }

    fn enter(&mut self, closure: &Closure, at: usize, argc: usize, tail: bool) -> Flow {
        let Some(proto) = vm_proto(closure) else {
            let err = type_error("an interpreter function cannot run on the VM", vec![]);
            return self.throw(err, None);
        };
        let params = proto.params as usize;
        if argc != params || proto.rest {
            if argc < params || (!proto.rest && argc > params) {
                let expected = if proto.rest {
                    format!("at least {params}")
                } else {
                    params.to_string()
                };
                let err = arity_error(
                    format!(
                        "{} takes {expected} argument(s), got {argc}",
                        proto.display_name()
                    ),
                    vec![Value::Int(argc as i64)],
                );
                return self.throw(err, Some(proto.display_name()));
            }
            let rest = self.pop_list(at + 1 + params, List::empty());
            self.stack.push(Value::List(rest));
        }
        if !self.spend_fuel() {
            let err = crate::error::out_of_fuel();
            return self.throw(err, None);
        }
        let proto = proto.clone();
        let slots = proto.slots as usize;
        let reuse = match self.frames.last() {
            Some(f) => tail && f.is_closure && at >= f.base + f.proto.slots as usize,
            None => false,
        };
        let base = if reuse {
            // Move the callee and its arguments down over the current frame.
            let Some(frame) = self.frames.last_mut() else {
                return Flow::Next(false);
            };
            frame.proto = proto;
            frame.ip = 0;
            let dest = frame.base - 1;
            let moved = self.stack.len() - at;
            for i in 0..moved {
                self.stack.swap(dest + i, at + i);
            }
            self.stack.truncate(dest + moved);
            frame.base
        } else {
            if self.frames.len() >= self.max_depth {
                let err = ErrorValue::value(
                    "stack-overflow",
                    format!("stack deeper than {} frames", self.max_depth),
                    vec![],
                );
                return self.throw(err, None);
            }
            self.frames.push(Frame {
                proto,
                is_closure: true,
                ip: 0,
                base: at + 1,
                fuel_restore: None,
            });
            at + 1
        };
        self.stack.resize(base + slots, Value::Nil);
        Flow::Next(true)
    }

    fn call_component(&mut self, comp: &Rc<Component>, at: usize, argc: usize, tail: bool) -> Flow {
        let args: Vec<Value> = self.stack.drain(at + 1..).collect();
        debug_assert_eq!(args.len(), argc);
        match component_args(comp, args) {
            Ok(slots) => {
                let n = slots.len();
                self.stack.truncate(at);
                self.stack.push(Value::Fn(comp.closure.clone()));
                self.stack.extend(slots);
                self.enter(&comp.closure, at, n, tail)
            }
            Err(err) => self.throw(err, Some(comp.name.name())),
        }
    }

    fn call_native(&mut self, native: &Native, at: usize, engine: &mut Engine) -> NativeFlow {
        let outcome = call_native(native, &self.stack[at + 1..], engine);
        self.shrink_stack(at);
        match outcome {
            NativeCall::Return(v) => {
                self.stack.push(v);
                NativeFlow::Flow(Flow::Next(false))
            }
            NativeCall::Raise(err, site) => NativeFlow::Flow(self.throw(err, Some(site))),
            NativeCall::Apply(f, args) => {
                let n = args.len();
                self.stack.push(f);
                self.stack.extend(args);
                NativeFlow::CallAgain(n)
            }
            NativeCall::WithFuel(budget, thunk) => {
                let outer = self.fuel;
                let granted = outer.map_or(budget, |o| o.min(budget));
                self.fuel = Some(granted);
                let depth = self.frames.len();
                self.stack.push(thunk);
                let flow = self.call(0, false, engine);
                if self.frames.len() > depth {
                    if let Some(frame) = self.frames.get_mut(depth) {
                        frame.fuel_restore = Some((outer, granted));
                    }
                } else if matches!(flow, Flow::Next(_)) {
                    // The thunk finished at once (a native): restore now.
                    self.restore_fuel(outer, granted);
                }
                NativeFlow::Flow(flow)
            }
            NativeCall::Eval(form) => NativeFlow::Flow(match engine.compile_eval(&form) {
                Ok(proto) => {
                    if self.frames.len() >= self.max_depth {
                        let err = ErrorValue::value("stack-overflow", "stack too deep", vec![]);
                        return NativeFlow::Flow(self.throw(err, None));
                    }
                    self.stack.push(Value::Nil);
                    let base = self.stack.len();
                    self.stack.resize(base + proto.slots as usize, Value::Nil);
                    self.frames.push(Frame {
                        proto,
                        is_closure: false,
                        ip: 0,
                        base,
                        fuel_restore: None,
                    });
                    Flow::Next(true)
                }
                Err(err) => self.throw(err, Some("eval")),
            }),
        }
    }

    fn local(&self, base: usize, slot: u16) -> Result<&Value, Value> {
        self.stack
            .get(base + slot as usize)
            .ok_or_else(|| corrupt("local slot out of range"))
    }

    fn capture(&self, index: u16) -> Result<&Value, Value> {
        let closure = self
            .frames
            .last()
            .filter(|f| f.is_closure)
            .and_then(|f| self.stack.get(f.base - 1));
        match closure {
            Some(Value::Fn(c)) => c
                .captures
                .get(index as usize)
                .ok_or_else(|| corrupt("capture out of range")),
            _ => Err(corrupt("capture outside a closure")),
        }
    }

    /// Makes the closure for child prototype `index` of the running function.
    fn make_closure(&self, proto: &Proto, base: usize, index: u32) -> Result<Value, Value> {
        let child = proto
            .protos
            .get(index as usize)
            .ok_or_else(|| corrupt("function index out of range"))?;
        let mut captures = Vec::with_capacity(child.captures.len());
        for from in &child.captures {
            captures.push(match from {
                crate::bytecode::CaptureFrom::Local(slot) => self.local(base, *slot)?.clone(),
                crate::bytecode::CaptureFrom::Capture(i) => self.capture(*i)?.clone(),
            });
        }
        Ok(Value::Fn(Rc::new(Closure {
            name: child.name,
            code: child.clone(),
            captures: captures.into_boxed_slice(),
        })))
    }

    /// Runs until the machine finishes, fails, or performs.
    pub fn run(&mut self, engine: &mut Engine) -> Step {
        if self.done {
            return Step::Error(type_error("the machine already finished", vec![]));
        }
        if let Some(argc) = self.pending_call.take() {
            if let Flow::Stop(step) = self.call(argc, false, engine) {
                return step;
            }
            if self.frames.is_empty() {
                // A native answered at once.
                self.done = true;
                return Step::Done(self.pop());
            }
        }
        if let Some(answer) = self.resume_with.take() {
            match answer {
                Ok(v) => self.stack.push(v),
                Err(e) => {
                    if let Flow::Stop(step) = self.throw(e, Some("perform")) {
                        return step;
                    }
                }
            }
        }
        let Some(frame) = self.frames.last() else {
            self.done = true;
            return Step::Done(self.pop());
        };
        let mut proto = frame.proto.clone();
        let mut ip = frame.ip;
        let mut base = frame.base;

        macro_rules! reload {
            () => {{
                match self.frames.last() {
                    Some(f) => {
                        proto = f.proto.clone();
                        ip = f.ip;
                        base = f.base;
                    }
                    None => {
                        self.done = true;
                        return Step::Done(self.pop());
                    }
                }
            }};
        }
        macro_rules! save_ip {
            () => {
                if let Some(f) = self.frames.last_mut() {
                    f.ip = ip;
                }
            };
        }
        macro_rules! flow {
            ($flow:expr) => {
                match $flow {
                    Flow::Next(true) => reload!(),
                    Flow::Next(false) => {}
                    Flow::Stop(step) => return step,
                }
            };
        }
        macro_rules! throw {
            ($err:expr, $site:expr) => {{
                save_ip!();
                let flow = self.throw($err, $site);
                flow!(flow);
                continue;
            }};
        }
        // Moves to `target`. The compiler only jumps forward; a backward jump (damaged or
        // hostile bytecode) is a loop and pays fuel like a call.
        macro_rules! jump {
            ($target:expr) => {{
                let target: usize = $target;
                if target < ip && !self.spend_fuel() {
                    throw!(crate::error::out_of_fuel(), None);
                }
                ip = target;
            }};
        }
        // Pushes a primitive's result; a boolean about to be tested by `jump-if-false`
        // branches at once instead.
        macro_rules! deliver {
            ($result:expr) => {{
                let result = $result;
                if let (Value::Bool(truth), Some(Op::JumpIfFalse(target))) =
                    (&result, proto.code.get(ip))
                {
                    let next = if *truth { ip + 1 } else { *target as usize };
                    jump!(next);
                } else {
                    self.stack.push(result);
                }
            }};
        }
        macro_rules! check {
            ($result:expr) => {
                match $result {
                    Ok(v) => v,
                    Err(e) => throw!(e, None),
                }
            };
        }

        loop {
            let Some(&op) = proto.code.get(ip) else {
                throw!(corrupt("ran past the end of the code"), None);
            };
            ip += 1;
            match op {
                Op::Const(i) => {
                    let v = check!(proto
                        .consts
                        .get(i as usize)
                        .ok_or_else(|| corrupt("constant out of range")))
                    .clone();
                    self.stack.push(v);
                }
                Op::Nil => self.stack.push(Value::Nil),
                Op::True => self.stack.push(Value::Bool(true)),
                Op::False => self.stack.push(Value::Bool(false)),
                Op::Int(n) => self.stack.push(Value::Int(i64::from(n))),
                Op::Local(slot) => {
                    let v = check!(self.local(base, slot)).clone();
                    self.stack.push(v);
                }
                Op::MoveLocal(slot) => match self.stack.get_mut(base + slot as usize) {
                    Some(place) => {
                        let v = std::mem::replace(place, Value::Nil);
                        self.stack.push(v);
                    }
                    None => throw!(corrupt("local slot out of range"), None),
                },
                Op::SetLocal(slot) => {
                    let v = self.pop();
                    match self.stack.get_mut(base + slot as usize) {
                        Some(place) => *place = v,
                        None => throw!(corrupt("local slot out of range"), None),
                    }
                }
                Op::LocalBoxed(slot) => {
                    let v = match check!(self.local(base, slot)) {
                        Value::Boxed(b) => b.borrow().clone(),
                        other => other.clone(),
                    };
                    self.stack.push(v);
                }
                Op::SetLocalBoxed(slot) => {
                    let v = self.pop();
                    match check!(self.local(base, slot)) {
                        Value::Boxed(b) => *b.borrow_mut() = v,
                        _ => throw!(corrupt("assignment through a slot without a box"), None),
                    }
                }
                Op::MakeBox(slot) => match self.stack.get_mut(base + slot as usize) {
                    Some(place) => {
                        let v = std::mem::replace(place, Value::Nil);
                        *place = Value::Boxed(Rc::new(RefCell::new(v)));
                    }
                    None => throw!(corrupt("local slot out of range"), None),
                },
                Op::Capture(i) => {
                    let v = check!(self.capture(i)).clone();
                    self.stack.push(v);
                }
                Op::CaptureBoxed(i) => {
                    let v = match check!(self.capture(i)) {
                        Value::Boxed(b) => b.borrow().clone(),
                        other => other.clone(),
                    };
                    self.stack.push(v);
                }
                Op::SetCaptureBoxed(i) => {
                    let v = self.pop();
                    match check!(self.capture(i)) {
                        Value::Boxed(b) => *b.borrow_mut() = v,
                        _ => throw!(corrupt("assignment through a capture without a box"), None),
                    }
                }
                Op::Global(g) => {
                    let Some(global) = proto.globals.get(g as usize) else {
                        throw!(corrupt("global out of range"), None);
                    };
                    let value = global.value.borrow().clone();
                    match value {
                        Some(v) => self.stack.push(v),
                        None => {
                            let err = crate::error::unbound_variable(global.name, false);
                            throw!(err, Some(global.name.name()));
                        }
                    }
                }
                Op::SetGlobal(g) | Op::DefineGlobal(g) => {
                    let v = self.pop();
                    let Some(global) = proto.globals.get(g as usize) else {
                        throw!(corrupt("global out of range"), None);
                    };
                    if matches!(op, Op::SetGlobal(_)) && !global.is_bound() {
                        let err = crate::error::unbound_variable(global.name, true);
                        throw!(err, None);
                    }
                    global.set(v);
                }
                Op::Pop => {
                    self.stack.pop();
                }
                Op::Jump(t) => jump!(t as usize),
                Op::JumpIfFalse(t) => {
                    if !self.pop().is_truthy() {
                        jump!(t as usize);
                    }
                }
                Op::JumpIfFalseKeep(t) => {
                    if self.stack.last().is_some_and(|v| !v.is_truthy()) {
                        jump!(t as usize);
                    } else {
                        self.stack.pop();
                    }
                }
                Op::JumpIfTrueKeep(t) => {
                    if self.stack.last().is_some_and(Value::is_truthy) {
                        jump!(t as usize);
                    } else {
                        self.stack.pop();
                    }
                }
                Op::JumpIfUnbound(g, t) => {
                    let Some(global) = proto.globals.get(g as usize) else {
                        throw!(corrupt("global out of range"), None);
                    };
                    if !global.is_bound() {
                        jump!(t as usize);
                    }
                }
                Op::TailCall(n) if self.fuel != Some(0) => {
                    // A closure calling itself (or another closure of the same code) in tail
                    // position: reuse the frame in place — a loop.
                    let n = n as usize;
                    let len = self.stack.len();
                    let same = len > n
                        && base > 0
                        && self.frames.last().is_some_and(|f| f.is_closure)
                        && match &self.stack[len - n - 1] {
                            // The same allocation as the running code is that code (no
                            // downcast needed to know it is a `Proto`).
                            Value::Fn(c) => {
                                std::ptr::addr_eq(Rc::as_ptr(&c.code), Rc::as_ptr(&proto))
                                    && !proto.rest
                                    && proto.params as usize == n
                            }
                            _ => false,
                        };
                    if same {
                        if let Some(fuel) = &mut self.fuel {
                            *fuel -= 1;
                        }
                        let at = len - n - 1;
                        self.stack.swap(base - 1, at);
                        for i in 0..n {
                            self.stack.swap(base + i, at + 1 + i);
                        }
                        self.shrink_stack(base + n);
                        let slots = proto.slots as usize;
                        if slots > n {
                            self.stack.resize(base + slots, Value::Nil);
                        }
                        ip = 0;
                        continue;
                    }
                    save_ip!();
                    let flow = self.call(n, true, engine);
                    flow!(flow);
                }
                Op::Call(n) if self.fuel != Some(0) && self.frames.len() < self.max_depth => {
                    // The common case inline: a bytecode closure with exactly its parameters.
                    let n = n as usize;
                    let len = self.stack.len();
                    let callee = match len.checked_sub(n + 1).map(|at| &self.stack[at]) {
                        Some(Value::Fn(c)) => {
                            // Recursion calls the running code: no downcast needed.
                            let code = if std::ptr::addr_eq(Rc::as_ptr(&c.code), Rc::as_ptr(&proto))
                            {
                                Some(proto.clone())
                            } else {
                                vm_proto(c)
                            };
                            code.filter(|p| !p.rest && p.params as usize == n)
                        }
                        _ => None,
                    };
                    save_ip!();
                    match callee {
                        Some(callee) => {
                            if let Some(fuel) = &mut self.fuel {
                                *fuel -= 1;
                            }
                            let new_base = len - n;
                            let slots = callee.slots as usize;
                            if slots > n {
                                self.stack.resize(new_base + slots, Value::Nil);
                            }
                            self.frames.push(Frame {
                                proto: callee.clone(),
                                is_closure: true,
                                ip: 0,
                                base: new_base,
                                fuel_restore: None,
                            });
                            proto = callee;
                            ip = 0;
                            base = new_base;
                        }
                        None => {
                            let flow = self.call(n, false, engine);
                            flow!(flow);
                        }
                    }
                }
                Op::Return if self.frames.len() > 1 => {
                    let result = self.pop();
                    let Some(frame) = self.frames.pop() else {
                        throw!(corrupt("return without a frame"), None);
                    };
                    if let Some((outer, granted)) = frame.fuel_restore {
                        self.restore_fuel(outer, granted);
                    }
                    self.shrink_stack(frame.base.saturating_sub(1));
                    self.stack.push(result);
                    reload!();
                }
                Op::Call(n) | Op::TailCall(n) => {
                    save_ip!();
                    let flow = self.call(n as usize, matches!(op, Op::TailCall(_)), engine);
                    flow!(flow);
                }
                Op::Return => {
                    let result = self.pop();
                    let flow = self.do_return(result);
                    flow!(flow);
                }
                Op::SelfClosure => {
                    let this = match self.frames.last() {
                        Some(f) if f.is_closure => self.stack.get(f.base - 1).cloned(),
                        _ => None,
                    };
                    match this {
                        Some(v) => self.stack.push(v),
                        None => throw!(corrupt("self-closure outside a closure"), None),
                    }
                }
                Op::Closure(i) => {
                    let v = check!(self.make_closure(&proto, base, i));
                    self.stack.push(v);
                }
                Op::List(n) => {
                    let Some(from) = self.stack.len().checked_sub(n as usize) else {
                        throw!(corrupt("stack underflow"), None);
                    };
                    let items = self.pop_list(from, List::empty());
                    self.stack.push(Value::List(items));
                }
                Op::Dict(n) => {
                    let Some(from) = self.stack.len().checked_sub(n as usize) else {
                        throw!(corrupt("stack underflow"), None);
                    };
                    let items: Vec<Value> = self.stack.drain(from..).collect();
                    let mut dict = Dict::new();
                    let mut bad = None;
                    for pair in items.chunks(2) {
                        if let [k, v] = pair {
                            if k.is_function() {
                                bad = Some(k.clone());
                                break;
                            }
                            dict.insert(Key(k.clone()), v.clone());
                        }
                    }
                    if let Some(k) = bad {
                        throw!(type_error("a function cannot be a dict key", vec![k]), None);
                    }
                    self.stack.push(Value::Dict(dict));
                }
                Op::Element(c, n) => {
                    let tag = check!(proto
                        .consts
                        .get(c as usize)
                        .ok_or_else(|| corrupt("constant out of range")))
                    .clone();
                    let Some(from) = self.stack.len().checked_sub(n as usize) else {
                        throw!(corrupt("stack underflow"), None);
                    };
                    let list = List::cons(tag, self.pop_list(from, List::empty()));
                    self.stack.push(Value::List(list));
                }
                Op::PushGuard(target) => self.handlers.push(Handler {
                    frames: self.frames.len(),
                    stack: self.stack.len(),
                    target: target as usize,
                }),
                Op::PopGuard => {
                    self.handlers.pop();
                }
                Op::Perform => {
                    save_ip!();
                    if !self.spend_fuel() {
                        throw!(crate::error::out_of_fuel(), None);
                    }
                    let request = self.pop();
                    return Step::Perform(request);
                }
                Op::DefMacro(g) | Op::DefComp(g, _) => {
                    let v = self.pop();
                    let Some(global) = proto.globals.get(g as usize) else {
                        throw!(corrupt("global out of range"), None);
                    };
                    let Value::Fn(closure) = v else {
                        throw!(corrupt("definition of a non-function"), None);
                    };
                    let defined = if let Op::DefComp(_, keys) = op {
                        let keys = match proto.consts.get(keys as usize) {
                            Some(Value::List(keys)) => {
                                keys.iter().filter_map(Value::as_symbol).collect()
                            }
                            _ => throw!(corrupt("component keys"), None),
                        };
                        Value::Component(Rc::new(Component {
                            name: global.name,
                            keys,
                            closure,
                        }))
                    } else {
                        Value::Macro(closure)
                    };
                    global.set(defined);
                }
                Op::DefTest(c) => {
                    let thunk = self.pop();
                    let Some(Value::Str(name)) = proto.consts.get(c as usize) else {
                        throw!(corrupt("test name"), None);
                    };
                    let loc = proto.pos_at(ip - 1).map(|pos| {
                        Rc::new(SrcLoc {
                            file: proto.file.clone(),
                            pos,
                        })
                    });
                    engine.tests.push(Test {
                        name: name.clone(),
                        thunk,
                        loc,
                    });
                }
                Op::Prim(prim, g) => {
                    // Integer fast path, inline; a comparison feeding a branch branches at once.
                    let len = self.stack.len();
                    if len >= 2
                        && prim.arity() == 2
                        && proto
                            .globals
                            .get(g as usize)
                            .is_some_and(|g| g.builtin.get())
                    {
                        if let (Value::Int(a), Value::Int(b)) =
                            (&self.stack[len - 2], &self.stack[len - 1])
                        {
                            if let Some(result) = int_prim(prim, *a, *b) {
                                // Both operands are integers: nothing to drop.
                                std::mem::forget(self.stack.pop());
                                std::mem::forget(self.stack.pop());
                                deliver!(result);
                                continue;
                            }
                        }
                    }
                    save_ip!();
                    let flow = self.prim(prim, &proto, g, engine);
                    flow!(flow);
                }
                Op::PrimLocalInt(..) | Op::PrimLocals(..) => {
                    let (prim, a) = match op {
                        Op::PrimLocalInt(p, a, _) | Op::PrimLocals(p, a, _) => (p, a),
                        _ => unreachable!(),
                    };
                    let g = proto
                        .prim_globals
                        .get(prim.code() as usize)
                        .copied()
                        .unwrap_or(u16::MAX);
                    let right = match op {
                        Op::PrimLocalInt(_, _, k) => Some(i64::from(k)),
                        Op::PrimLocals(_, _, b) => match self.stack.get(base + b as usize) {
                            Some(Value::Int(y)) => Some(*y),
                            _ => None,
                        },
                        _ => None,
                    };
                    if let (Some(Value::Int(x)), Some(y)) =
                        (self.stack.get(base + a as usize), right)
                    {
                        if proto
                            .globals
                            .get(g as usize)
                            .is_some_and(|g| g.builtin.get())
                        {
                            if let Some(result) = int_prim(prim, *x, y) {
                                deliver!(result);
                                continue;
                            }
                        }
                    }
                    let left = check!(self.local(base, a)).clone();
                    let right = match op {
                        Op::PrimLocals(_, _, b) => check!(self.local(base, b)).clone(),
                        Op::PrimLocalInt(_, _, k) => Value::Int(i64::from(k)),
                        _ => Value::Nil,
                    };
                    self.stack.push(left);
                    self.stack.push(right);
                    save_ip!();
                    let flow = self.prim(prim, &proto, g, engine);
                    flow!(flow);
                }
            }
        }
    }

    /// A primitive the inline integer path did not answer: list and one-argument fast paths,
    /// in-place `assoc`, else the native (or whatever the global holds now, when rebound).
    fn prim(&mut self, prim: Prim, proto: &Proto, g: u16, engine: &mut Engine) -> Flow {
        let argc = prim.arity() as usize;
        let Some(global) = proto.globals.get(g as usize) else {
            return self.throw(corrupt("global out of range"), None);
        };
        if !global.builtin.get() {
            let current = global.value.borrow().clone();
            let Some(f) = current else {
                let err = crate::error::unbound_variable(global.name, false);
                return self.throw(err, Some(global.name.name()));
            };
            let Some(at) = self.stack.len().checked_sub(argc) else {
                return self.throw(corrupt("stack underflow"), None);
            };
            self.stack.insert(at, f);
            return self.call(argc, false, engine);
        }
        let len = self.stack.len();
        if len < argc {
            return self.throw(corrupt("stack underflow"), None);
        }
        if prim == Prim::Assoc {
            // The VM owns its operands: a dict nothing else holds is updated in place.
            if let (Value::Dict(_) | Value::Nil, key) = (&self.stack[len - 3], &self.stack[len - 2])
            {
                if !key.is_function() {
                    let value = self.pop();
                    let key = self.pop();
                    let mut map = match self.pop() {
                        Value::Dict(map) => map,
                        _ => Dict::new(),
                    };
                    map.insert(Key(key), value);
                    self.stack.push(Value::Dict(map));
                    return Flow::Next(false);
                }
            }
        }
        // Two integers were already tried by the caller's inline fast path.
        let fast = match (prim, &self.stack[len - 1]) {
            (Prim::Not, v) => Some(Value::Bool(!v.is_truthy())),
            (Prim::IsNil, v) => Some(Value::Bool(matches!(v, Value::Nil))),
            (Prim::First, Value::List(l)) => Some(l.first().cloned().unwrap_or(Value::Nil)),
            (Prim::Rest, Value::List(l)) => Some(Value::List(l.rest())),
            (Prim::IsEmpty, Value::List(l)) => Some(Value::Bool(l.is_empty())),
            (Prim::Inc, Value::Int(n)) => n.checked_add(1).map(Value::Int),
            (Prim::Dec, Value::Int(n)) => n.checked_sub(1).map(Value::Int),
            (Prim::Abs, Value::Int(n)) => n.checked_abs().map(Value::Int),
            (Prim::Cons, Value::List(tail)) => Some(Value::List(List::cons(
                self.stack[len - 2].clone(),
                tail.clone(),
            ))),
            _ => None,
        };
        if let Some(v) = fast {
            self.stack.truncate(len - argc);
            self.stack.push(v);
            return Flow::Next(false);
        }
        let native = match &*global.value.borrow() {
            Some(Value::Native(n)) => n.clone(),
            _ => return self.throw(corrupt("primitive global lost its native"), None),
        };
        let NativeKind::Pure(f) = native.kind else {
            return self.throw(corrupt("primitive is not a plain native"), None);
        };
        match f(&self.stack[len - argc..]) {
            Ok(v) => {
                self.stack.truncate(len - argc);
                self.stack.push(v);
                Flow::Next(false)
            }
            Err(err) => self.throw(err, Some(native.name)),
        }
    }
}

/// A primitive on two integers, when it has an integer answer.
#[inline(always)]
fn int_prim(prim: Prim, a: i64, b: i64) -> Option<Value> {
    match prim {
        Prim::Add => a.checked_add(b).map(Value::Int),
        Prim::Sub => a.checked_sub(b).map(Value::Int),
        Prim::Mul => a.checked_mul(b).map(Value::Int),
        Prim::Lt => Some(Value::Bool(a < b)),
        Prim::Gt => Some(Value::Bool(a > b)),
        Prim::Le => Some(Value::Bool(a <= b)),
        Prim::Ge => Some(Value::Bool(a >= b)),
        Prim::Eq => Some(Value::Bool(a == b)),
        Prim::Mod if b > 0 => Some(Value::Int(a.rem_euclid(b))),
        _ => None,
    }
}
