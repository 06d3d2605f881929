//! The bytecode VM: the fast engine. Same semantics as the interpreter (the conformance
//! suite runs on both and compares), same `Step` protocol for hosts.
//!
//! One value stack holds every frame's registers; `frames` records where each function's
//! registers start, where to resume and where its result goes. A tail call reuses the
//! caller's frame. Guards are entries in `handlers` (frame count, the register a raise lands
//! in, handler address). Nothing
//! here recurses in Rust per SX call, and no input — not even a damaged program — makes it
//! index out of bounds: the hot accesses (registers, globals, the next instruction) rely on
//! what `Proto::new` checked of every prototype that exists, and on the frame invariant on
//! [`Machine`]; every other access is checked.

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
    /// Index of register 0; the callee value sits just below it.
    base: usize,
    /// Where the result goes in the caller's frame: the callee's register (`base - 1`), or
    /// the result register of a rebound primitive.
    ret: usize,
}

/// A `call-with-fuel` frame: the outer budget and what was granted, restored when the frame
/// at `depth` ends. Kept apart from [`Frame`] so frames stay small.
struct FuelFrame {
    depth: usize,
    outer: Option<u64>,
    granted: u64,
}

/// The call stack. Slots are kept after a return and overwritten by the next call, so a call
/// writes a frame in place instead of pushing one.
struct Frames {
    slots: Vec<Frame>,
    depth: usize,
}

impl Frames {
    fn new() -> Frames {
        Frames {
            slots: Vec::new(),
            depth: 0,
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.depth
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }

    #[inline(always)]
    fn last(&self) -> Option<&Frame> {
        self.depth.checked_sub(1).and_then(|i| self.slots.get(i))
    }

    #[inline(always)]
    fn last_mut(&mut self) -> Option<&mut Frame> {
        self.depth
            .checked_sub(1)
            .and_then(|i| self.slots.get_mut(i))
    }

    fn get(&self, i: usize) -> Option<&Frame> {
        self.slots[..self.depth].get(i)
    }

    fn iter(&self) -> std::slice::Iter<'_, Frame> {
        self.slots[..self.depth].iter()
    }

    /// A closure's frame (or, with `is_closure` false, a top-level form's or an `eval`'s).
    #[inline(always)]
    fn push(&mut self, proto: Rc<Proto>, is_closure: bool, base: usize, ret: usize) {
        match self.slots.get_mut(self.depth) {
            Some(slot) => {
                slot.proto = proto;
                slot.is_closure = is_closure;
                slot.ip = 0;
                slot.base = base;
                slot.ret = ret;
            }
            None => self.slots.push(Frame {
                proto,
                is_closure,
                ip: 0,
                base,
                ret,
            }),
        }
        self.depth += 1;
    }

    /// The frame that ended (its slot stays until the next call).
    #[inline(always)]
    fn pop(&mut self) -> Option<&Frame> {
        self.depth = self.depth.checked_sub(1)?;
        self.slots.get(self.depth)
    }
}

struct Handler {
    frames: usize,
    /// The register (an absolute stack index) the raised value lands in.
    dst: usize,
    target: usize,
}

/// The machine. Its one stack is the frames' registers end to end. A call's frame starts in
/// the caller's registers (at the arguments), so arguments are never copied. The stack only
/// grows; a finished frame's registers are cleared (only numbers, booleans and nil may stay
/// above the running frame), so nothing is kept alive by a dead register.
///
/// Invariant (what `run`'s unchecked register reads rely on): every frame's registers,
/// `base..base + proto.slots`, lie within `stack` — a frame is pushed (or its code replaced
/// by a tail call) only after `reach(base + slots)`, and nothing shrinks the stack.
pub struct Machine {
    stack: Vec<Value>,
    frames: Frames,
    handlers: Vec<Handler>,
    fuel_frames: Vec<FuelFrame>,
    fuel: Option<u64>,
    max_depth: usize,
    /// The host's answer to a `perform`, applied when the machine runs again.
    resume_with: Option<Result<Value, Value>>,
    /// Where that answer goes (an absolute stack index).
    perform_dst: usize,
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
    /// `apply`: call the function now in the call's register with this many arguments (in
    /// the same tail position as the `apply`).
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
        let stack = vec![Value::Nil; 1 + proto.slots as usize];
        let mut frames = Frames::new();
        frames.push(proto, false, 1, 0);
        Machine {
            stack,
            frames,
            handlers: Vec::new(),
            fuel_frames: Vec::new(),
            fuel,
            max_depth,
            resume_with: None,
            perform_dst: 0,
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
            frames: Frames::new(),
            handlers: Vec::new(),
            fuel_frames: Vec::new(),
            fuel,
            max_depth,
            resume_with: None,
            perform_dst: 0,
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

    /// The running frame's code, next instruction and first register; `None` once the
    /// last frame has returned.
    #[inline(never)]
    fn resume_point(&self) -> Option<(Rc<Proto>, usize, usize)> {
        self.frames.last().map(|f| (f.proto.clone(), f.ip, f.base))
    }

    /// Ends the run: the result is in register 0.
    #[inline(never)]
    fn finish(&mut self) -> Step {
        self.done = true;
        Step::Done(
            self.stack
                .get_mut(0)
                .map(std::mem::take)
                .unwrap_or_default(),
        )
    }

    /// Where the running frame's registers end (1 before the first call of an `apply`
    /// machine: its function's register).
    fn frame_end(&self) -> usize {
        self.frames
            .last()
            .map_or(1, |f| f.base + f.proto.slots as usize)
    }

    /// Drops the values in registers `from..to` (those that hold anything to drop).
    fn clear(&mut self, from: usize, to: usize) {
        let to = to.min(self.stack.len());
        if let Some(regs) = self.stack.get_mut(from..to) {
            for v in regs {
                if !v.is_plain() {
                    *v = Value::Nil;
                }
            }
        }
    }

    /// Pops the running frame, clearing its registers (and its callee's, when the result
    /// goes elsewhere: a rebound primitive's call) and restoring its fuel budget; returns
    /// where its result goes.
    fn pop_frame(&mut self) -> Option<usize> {
        let frame = self.frames.pop()?;
        let (base, end, ret) = (
            frame.base,
            frame.base + frame.proto.slots as usize,
            frame.ret,
        );
        self.end_fuel_frame();
        self.clear(if ret + 1 == base { base } else { base - 1 }, end);
        Some(ret)
    }

    /// After a frame is popped: restores the budget if it was a `call-with-fuel` frame.
    #[inline(always)]
    fn end_fuel_frame(&mut self) {
        if self
            .fuel_frames
            .last()
            .is_some_and(|f| f.depth == self.frames.len())
        {
            if let Some(f) = self.fuel_frames.pop() {
                self.restore_fuel(f.outer, f.granted);
            }
        }
    }

    /// Makes sure registers up to `end` exist.
    #[inline(always)]
    fn reach(&mut self, end: usize) {
        if self.stack.len() < end {
            self.stack.resize(end, Value::Nil);
        }
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
                while self.pop_frame().is_some() {}
                self.done = true;
                return Flow::Stop(Step::Error(v));
            };
            while self.frames.len() > handler.frames {
                self.pop_frame();
            }
            if self.fuel == Some(0) {
                continue;
            }
            match self.stack.get_mut(handler.dst) {
                Some(place) => *place = v,
                None => return self.throw(corrupt("guard register out of range"), None),
            }
            if let Some(frame) = self.frames.last_mut() {
                // `Proto::new` checked the target against the function that pushed the
                // guard; damaged code can leave a guard behind that function (a return or a
                // tail call without `pop-guard`), and the fetch reads unchecked.
                if handler.target >= frame.proto.code.len() {
                    return self.throw(corrupt("a guard outlived its function"), None);
                }
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

    /// Returns from the running frame with `result`.
    fn do_return(&mut self, result: Value) -> Flow {
        let Some(ret) = self.pop_frame() else {
            self.done = true;
            return Flow::Stop(Step::Done(result));
        };
        if self.frames.is_empty() {
            self.done = true;
            return Flow::Stop(Step::Done(result));
        }
        match self.stack.get_mut(ret) {
            Some(place) => *place = result,
            None => return self.throw(corrupt("return register out of range"), None),
        }
        Flow::Next(true)
    }

    /// Calls the value at stack index `at` with the `argc` values after it; the result goes
    /// to `ret`.
    fn call(
        &mut self,
        at: usize,
        mut argc: usize,
        ret: usize,
        tail: bool,
        engine: &mut Engine,
    ) -> Flow {
        // A loop, not recursion: `apply` of `apply` of ... (as deep as data can nest) calls
        // again here without growing the Rust stack.
        loop {
            let Some(f) = self.stack.get(at).cloned() else {
                return self.throw(corrupt("call register out of range"), None);
            };
            if self.stack.len() < at + 1 + argc {
                return self.throw(corrupt("call arguments out of range"), None);
            }
            return match &f {
                Value::Fn(closure) => self.enter(closure, at, argc, ret, tail),
                Value::Component(comp) => self.call_component(comp, at, argc, ret, tail),
                Value::Native(native) => match self.call_native(native, at, argc, ret, engine) {
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

    fn enter(&mut self, closure: &Closure, at: usize, argc: usize, ret: usize, tail: bool) -> Flow {
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
            // The extra arguments as a list in the rest parameter's register.
            let first = at + 1 + params;
            let mut rest = List::empty();
            for i in (first..at + 1 + argc).rev() {
                rest = List::cons(std::mem::take(&mut self.stack[i]), rest);
            }
            self.reach(first + 1);
            self.stack[first] = Value::List(rest);
        }
        if !self.spend_fuel() {
            let err = crate::error::out_of_fuel();
            return self.throw(err, None);
        }
        let slots = proto.slots as usize;
        let passed = params + usize::from(proto.rest);
        let reuse = tail && ret == at && self.frames.last().is_some_and(|f| f.is_closure);
        if reuse {
            // Move the callee and its arguments down over the running frame.
            let Some(frame) = self.frames.last_mut() else {
                return Flow::Next(false);
            };
            let old_end = frame.base + frame.proto.slots as usize;
            frame.proto = proto;
            frame.ip = 0;
            let dest = frame.base - 1;
            for i in 0..=passed {
                self.stack[dest + i] = std::mem::take(&mut self.stack[at + i]);
            }
            self.clear(dest + 1 + passed, old_end);
            self.reach(dest + 1 + slots);
            return Flow::Next(true);
        }
        if self.frames.len() >= self.max_depth {
            let err = ErrorValue::value(
                "stack-overflow",
                format!("stack deeper than {} frames", self.max_depth),
                vec![],
            );
            return self.throw(err, None);
        }
        let base = at + 1;
        self.frames.push(proto, true, base, ret);
        self.reach(base + slots);
        Flow::Next(true)
    }

    fn call_component(
        &mut self,
        comp: &Rc<Component>,
        at: usize,
        argc: usize,
        ret: usize,
        tail: bool,
    ) -> Flow {
        let args: Vec<Value> = self.stack[at + 1..at + 1 + argc]
            .iter_mut()
            .map(std::mem::take)
            .collect();
        match component_args(comp, args) {
            Ok(slots) => {
                let n = slots.len();
                self.place_call(at, Value::Fn(comp.closure.clone()), slots);
                self.enter(&comp.closure, at, n, ret, tail)
            }
            Err(err) => self.throw(err, Some(comp.name.name())),
        }
    }

    /// Puts `f` at `at` and `args` after it, making room.
    fn place_call(&mut self, at: usize, f: Value, args: Vec<Value>) {
        self.reach(at + 1 + args.len());
        self.stack[at] = f;
        for (i, arg) in args.into_iter().enumerate() {
            self.stack[at + 1 + i] = arg;
        }
    }

    /// Delivers a native call's value to `ret` and clears the call's registers.
    fn deliver_call(&mut self, at: usize, argc: usize, ret: usize, v: Value) {
        self.clear(at, at + 1 + argc);
        if let Some(place) = self.stack.get_mut(ret) {
            *place = v;
        }
    }

    fn call_native(
        &mut self,
        native: &Native,
        at: usize,
        argc: usize,
        ret: usize,
        engine: &mut Engine,
    ) -> NativeFlow {
        let outcome = call_native(native, &self.stack[at + 1..at + 1 + argc], engine);
        match outcome {
            NativeCall::Return(v) => {
                self.deliver_call(at, argc, ret, v);
                NativeFlow::Flow(Flow::Next(false))
            }
            NativeCall::Raise(err, site) => NativeFlow::Flow(self.throw(err, Some(site))),
            NativeCall::Apply(f, args) => {
                let n = args.len();
                self.clear(at + 1, at + 1 + argc);
                self.place_call(at, f, args);
                NativeFlow::CallAgain(n)
            }
            NativeCall::WithFuel(budget, thunk) => {
                let outer = self.fuel;
                let granted = outer.map_or(budget, |o| o.min(budget));
                self.fuel = Some(granted);
                let depth = self.frames.len();
                self.place_call(at, thunk, Vec::new());
                for v in &mut self.stack[at + 1..at + 1 + argc] {
                    *v = Value::Nil;
                }
                let flow = self.call(at, 0, ret, false, engine);
                if self.frames.len() > depth {
                    self.fuel_frames.push(FuelFrame {
                        depth,
                        outer,
                        granted,
                    });
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
                    // The form runs in a frame of its own over the call's registers.
                    let base = at + 1;
                    self.clear(at, base + argc);
                    self.reach(base + proto.slots as usize);
                    self.frames.push(proto, false, base, ret);
                    Flow::Next(true)
                }
                Err(err) => self.throw(err, Some("eval")),
            }),
        }
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
                crate::bytecode::CaptureFrom::Local(slot) => self
                    .stack
                    .get(base + *slot as usize)
                    .ok_or_else(|| corrupt("register out of range"))?
                    .clone(),
                crate::bytecode::CaptureFrom::Capture(i) => self.capture(*i)?.clone(),
            });
        }
        Ok(Value::Fn(Rc::new(Closure {
            name: child.name,
            code: child.clone(),
            captures: captures.into_boxed_slice(),
        })))
    }

    /// The values of `n` registers from `from` (taken: they are temporaries) as a list.
    fn take_list(&mut self, from: usize, n: usize) -> Result<List, Value> {
        let items = self
            .stack
            .get_mut(from..from + n)
            .ok_or_else(|| corrupt("register out of range"))?;
        let mut list = List::empty();
        for v in items.iter_mut().rev() {
            list = List::cons(std::mem::take(v), list);
        }
        Ok(list)
    }
}

/// A primitive's operands (absolute stack indices): `arity` registers from one, two
/// registers, or a register and a small integer.
#[derive(Clone, Copy)]
enum Operands {
    From(usize),
    Two(usize, usize),
    RegInt(usize, i32),
}

/// What a call instruction leaves to the call paths after `run`'s dispatch: the function's
/// register, the argument count, and whether the call is in tail position. (A plain tuple
/// measured ~2 % more instructions per call: LLVM lays `run` out differently.)
enum Next {
    Call(u16, u16, bool),
}

impl Machine {
    /// Runs until the machine finishes, fails, or performs.
    ///
    /// The kernel's only `unsafe`: the unchecked reads of registers, globals and the next
    /// instruction in the macros below, each with its SAFETY argument.
    #[allow(unsafe_code)]
    pub fn run(&mut self, engine: &mut Engine) -> Step {
        if self.done {
            return Step::Error(type_error("the machine already finished", vec![]));
        }
        if let Some(argc) = self.pending_call.take() {
            if let Flow::Stop(step) = self.call(0, argc, 0, false, engine) {
                return step;
            }
            if self.frames.is_empty() {
                // A native answered at once.
                return self.finish();
            }
        }
        if let Some(answer) = self.resume_with.take() {
            match answer {
                Ok(v) => match self.stack.get_mut(self.perform_dst) {
                    Some(place) => *place = v,
                    None => {
                        if let Flow::Stop(step) = self.throw(corrupt("perform register"), None) {
                            return step;
                        }
                    }
                },
                Err(e) => {
                    if let Flow::Stop(step) = self.throw(e, Some("perform")) {
                        return step;
                    }
                }
            }
        }
        let Some((mut proto, mut ip, mut base)) = self.resume_point() else {
            return self.finish();
        };

        macro_rules! reload {
            () => {{
                match self.frames.last() {
                    Some(f) => {
                        proto = f.proto.clone();
                        ip = f.ip;
                        base = f.base;
                    }
                    None => return self.finish(),
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
        // After a call, primitive or raise that did not stay in the running frame's code.
        // (Out of line, unlike `reload!` on the hot return path: it is expanded at every
        // slow path, and its size counts in the browser's module.)
        macro_rules! flow {
            ($flow:expr) => {
                match $flow {
                    Flow::Next(true) => match self.resume_point() {
                        Some((code, at, from)) => {
                            proto = code;
                            ip = at;
                            base = from;
                        }
                        None => return self.finish(),
                    },
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
        // A register of the running frame, named by an operand of the running instruction.
        //
        // SAFETY (`reg!`, `reg_mut!`): `r < proto.slots`, since `Proto::new` checks every
        // register operand of every instruction; and `base + proto.slots <= stack.len()`,
        // since every frame is entered only after `reach(base + slots)` and the stack never
        // shrinks (the `Machine` invariant). So `base + r` is in bounds.
        macro_rules! reg {
            ($r:expr) => {{
                let i = base + $r as usize;
                debug_assert!(($r as usize) < proto.slots as usize && i < self.stack.len());
                unsafe { self.stack.get_unchecked(i) }
            }};
        }
        macro_rules! reg_mut {
            ($r:expr) => {{
                let i = base + $r as usize;
                debug_assert!(($r as usize) < proto.slots as usize && i < self.stack.len());
                unsafe { self.stack.get_unchecked_mut(i) }
            }};
        }
        // A global of the running function, named by an operand. `Proto::new` checks every
        // global operand against `proto.globals`.
        macro_rules! global {
            ($g:expr) => {{
                debug_assert!(($g as usize) < proto.globals.len());
                // SAFETY: `g < proto.globals.len()` (checked by `Proto::new`).
                unsafe { proto.globals.get_unchecked($g as usize) }
            }};
        }
        macro_rules! set {
            ($r:expr, $v:expr) => {{
                let v = $v;
                store(reg_mut!($r), v);
            }};
        }
        // Moves to `target`. A backward jump (an inline named `let` going round, or damaged
        // code) is a loop and pays fuel like a call.
        macro_rules! jump {
            ($target:expr) => {{
                let target: usize = $target;
                if target < ip && !self.spend_fuel() {
                    throw!(crate::error::out_of_fuel(), None);
                }
                ip = target;
            }};
        }
        // Stores a primitive's result: a number or a boolean in place (see `set_int`).
        macro_rules! deliver {
            ($dst:expr, $result:expr) => {{
                match $result {
                    Value::Int(n) => set_int(reg_mut!($dst), n),
                    Value::Bool(truth) => branch_on!($dst, truth),
                    result => set!($dst, result),
                }
            }};
        }
        // Stores a boolean; when the next instruction tests it, branches at once. (Written
        // even when branching: `and` and `or` keep the value they test.)
        macro_rules! branch_on {
            ($dst:expr, $truth:expr) => {{
                let truth: bool = $truth;
                set_bool(reg_mut!($dst), truth);
                debug_assert!(ip < proto.code.len());
                // SAFETY: `ip` is the next instruction (see the fetch in the loop below).
                match unsafe { proto.code.get_unchecked(ip) } {
                    Op::JumpIfFalse(r, target) if *r == $dst => {
                        jump!(if truth { ip + 1 } else { *target as usize });
                    }
                    Op::JumpIfTrue(r, target) if *r == $dst => {
                        jump!(if truth { *target as usize } else { ip + 1 });
                    }
                    _ => {}
                }
            }};
        }
        // An integer primitive's answer, written as a number or a boolean in place (never a
        // whole value through memory); then the next instruction. No answer: fall through.
        macro_rules! deliver_int {
            ($dst:expr, $out:expr) => {
                match $out {
                    IntOut::Int(n) => {
                        set_int(reg_mut!($dst), n);
                        continue;
                    }
                    IntOut::Bool(truth) => {
                        branch_on!($dst, truth);
                        continue;
                    }
                    IntOut::None => {}
                }
            };
        }
        macro_rules! check {
            ($result:expr) => {
                match $result {
                    Ok(v) => v,
                    Err(e) => throw!(e, None),
                }
            };
        }
        // Whether the global a primitive was compiled from still holds the core native.
        macro_rules! builtin {
            ($g:expr) => {
                global!($g).builtin.get()
            };
        }

        // Starts the running closure over with the `n` arguments after register `r` as its
        // parameters: a tail call to itself is a loop. (The registers are a call's, whose
        // span `Proto::new` checked.)
        macro_rules! restart {
            ($r:expr, $n:expr) => {{
                let (r, n): (u16, u16) = ($r, $n);
                if let Some(fuel) = &mut self.fuel {
                    *fuel -= 1;
                }
                for i in 0..n {
                    match *reg_mut!(r + 1 + i) {
                        Value::Int(k) => set_int(reg_mut!(i), k),
                        ref mut arg => {
                            let v = std::mem::take(arg);
                            store(reg_mut!(i), v);
                        }
                    }
                }
                store(reg_mut!(r), Value::Nil);
                ip = 0;
                continue;
            }};
        }
        // A tail call of the function in register `r`.
        macro_rules! tail_call {
            ($r:expr, $n:expr) => {{
                let (r, n): (u16, u16) = ($r, $n);
                // A closure calling a bytecode closure with exactly its parameters in tail
                // position: the callee takes over the frame. Calling its own code, that is
                // a loop.
                let (at, n) = (base + r as usize, n as usize);
                let callee = match reg!(r) {
                    Value::Fn(c)
                        if self.fuel != Some(0)
                            && self.frames.last().is_some_and(|f| f.is_closure) =>
                    {
                        // The same allocation as the running code is that code (no
                        // downcast needed to know it is a `Proto`).
                        if std::ptr::addr_eq(Rc::as_ptr(&c.code), Rc::as_ptr(&proto)) {
                            Some(None)
                        } else {
                            vm_proto(c).map(Some)
                        }
                    }
                    _ => None,
                };
                match callee {
                    Some(None) if !proto.rest && proto.params as usize == n => {
                        // Its closure may differ (the same lambda, other captures).
                        let closure = std::mem::take(&mut self.stack[at]);
                        store(&mut self.stack[base - 1], closure);
                        restart!(r, n as u16);
                    }
                    Some(Some(code)) if !code.rest && code.params as usize == n => {
                        if let Some(fuel) = &mut self.fuel {
                            *fuel -= 1;
                        }
                        let closure = std::mem::take(&mut self.stack[at]);
                        store(&mut self.stack[base - 1], closure);
                        for i in 0..n {
                            let v = std::mem::take(&mut self.stack[at + 1 + i]);
                            store(&mut self.stack[base + i], v);
                        }
                        self.clear(base + n, base + proto.slots as usize);
                        self.reach(base + code.slots as usize);
                        if let Some(f) = self.frames.last_mut() {
                            f.proto = code.clone();
                        }
                        proto = code;
                        ip = 0;
                        continue;
                    }
                    _ => {}
                }
                save_ip!();
                let flow = self.call(at, n, at, true, engine);
                flow!(flow);
                continue;
            }};
        }
        // The code to enter for a call of closure `c` with `n` arguments, when it is
        // bytecode taking exactly those: `Some(None)` for the running code itself (recursion:
        // no downcast, no new reference), `Some(Some(code))` for another function.
        macro_rules! exact_code {
            ($c:expr, $n:expr) => {{
                let (c, n): (&Closure, u16) = ($c, $n);
                if std::ptr::addr_eq(Rc::as_ptr(&c.code), Rc::as_ptr(&proto)) {
                    (!proto.rest && proto.params == n).then_some(None)
                } else {
                    vm_proto(c).filter(|p| !p.rest && p.params == n).map(Some)
                }
            }};
        }
        // Enters the code `exact_code!` found for the call whose function is in register `r`.
        macro_rules! enter {
            ($r:expr, $code:expr) => {{
                let code: Option<Rc<Proto>> = $code;
                let at = base + $r as usize;
                save_ip!();
                if let Some(fuel) = &mut self.fuel {
                    *fuel -= 1;
                }
                let new_base = at + 1;
                let slots = code.as_ref().unwrap_or(&proto).slots as usize;
                self.reach(new_base + slots);
                match code {
                    None => self.frames.push(proto.clone(), true, new_base, at),
                    Some(code) => {
                        self.frames.push(code.clone(), true, new_base, at);
                        proto = code;
                    }
                }
                ip = 0;
                base = new_base;
                continue;
            }};
        }
        // A call of the function in register `r`; the common case inline: a bytecode
        // closure with exactly its parameters.
        macro_rules! call {
            ($r:expr, $n:expr) => {{
                let (r, n): (u16, u16) = ($r, $n);
                if self.fuel != Some(0) && self.frames.len() < self.max_depth {
                    if let Value::Fn(c) = reg!(r) {
                        if let Some(code) = exact_code!(c, n) {
                            enter!(r, code);
                        }
                    }
                }
                save_ip!();
                let at = base + r as usize;
                let flow = self.call(at, n as usize, at, false, engine);
                flow!(flow);
                continue;
            }};
        }

        // A primitive its fast path did not answer: the general path (`Machine::prim`).
        macro_rules! slow_prim {
            ($p:expr, $g:expr, $dst:expr, $operands:expr) => {{
                save_ip!();
                let flow = self.prim($p, $g, &proto, base + $dst as usize, $operands, engine);
                flow!(flow);
                continue;
            }};
        }
        // A binary integer primitive on two registers (`int2!`) or a register and a small
        // integer (`int_k!`): inline on integers while `g` holds the core native (a
        // comparison feeding a branch branches at once), else the general path.
        macro_rules! int2 {
            ($p:expr, $dst:expr, $a:expr, $b:expr, $g:expr) => {{
                let (dst, a, b, g) = ($dst, $a, $b, $g);
                if let (Some(x), Some(y)) = (reg!(a).as_int(), reg!(b).as_int()) {
                    if builtin!(g) {
                        deliver_int!(dst, int_prim($p, x, y));
                    }
                }
                slow_prim!(
                    $p,
                    g,
                    dst,
                    Operands::Two(base + a as usize, base + b as usize)
                )
            }};
        }
        macro_rules! int_k {
            ($p:expr, $dst:expr, $a:expr, $k:expr, $g:expr) => {{
                let (dst, a, k, g) = ($dst, $a, $k, $g);
                if let Some(x) = reg!(a).as_int() {
                    if builtin!(g) {
                        deliver_int!(dst, int_prim($p, x, i64::from(k)));
                    }
                }
                slow_prim!($p, g, dst, Operands::RegInt(base + a as usize, k))
            }};
        }

        // A one-operand primitive with a fast path: inline while `g` holds the core native,
        // else the general path. (An operand above `dst` is a temporary: cleared.)
        macro_rules! unary {
            ($p:expr, $dst:expr, $a:expr, $g:expr) => {{
                let (dst, a, g) = ($dst, $a, $g);
                if builtin!(g) {
                    if let Some(result) = unary_prim($p, reg!(a)) {
                        if a > dst {
                            store(reg_mut!(a), Value::Nil);
                        }
                        deliver!(dst, result);
                        continue;
                    }
                }
                slow_prim!($p, g, dst, Operands::From(base + a as usize))
            }};
        }

        loop {
            debug_assert!(ip < proto.code.len());
            // SAFETY: `ip < proto.code.len()`. A frame starts at 0 (its code is not empty);
            // a jump goes to a target `Proto::new` checked, a raise to a guard's target only
            // when it is within the code of the frame it lands in (`throw` checks); any other
            // instruction goes on to the next one, and there is one, because the last
            // instruction is `return` (checked by `Proto::new`), which leaves the frame.
            let op: &Op = unsafe { proto.code.get_unchecked(ip) };
            ip += 1;
            // The call instructions leave the match with the call to make, so the call
            // paths below are written (and compiled) once; every other instruction
            // continues the loop.
            let next = match *op {
                Op::Const(dst, i) => {
                    let v = check!(proto
                        .consts
                        .get(i as usize)
                        .ok_or_else(|| corrupt("constant out of range")))
                    .clone();
                    set!(dst, v);
                    continue;
                }
                Op::Nil(dst) => {
                    set!(dst, Value::Nil);
                    continue;
                }
                Op::True(dst) => {
                    set!(dst, Value::Bool(true));
                    continue;
                }
                Op::False(dst) => {
                    set!(dst, Value::Bool(false));
                    continue;
                }
                Op::Int(dst, n) => {
                    set!(dst, Value::Int(i64::from(n)));
                    continue;
                }
                Op::Move(dst, src) => {
                    match *reg!(src) {
                        Value::Int(n) => set_int(reg_mut!(dst), n),
                        ref v => {
                            let v = v.clone();
                            set!(dst, v);
                        }
                    };
                    continue;
                }
                Op::Take(dst, src) => {
                    match *reg_mut!(src) {
                        Value::Int(n) => set_int(reg_mut!(dst), n),
                        ref mut v => {
                            let v = std::mem::take(v);
                            set!(dst, v);
                        }
                    };
                    continue;
                }
                Op::LocalBoxed(dst, src) => {
                    let v = match reg!(src) {
                        Value::Boxed(b) => b.borrow().clone(),
                        other => other.clone(),
                    };
                    set!(dst, v);
                    continue;
                }
                Op::SetLocalBoxed(slot, src) => {
                    let v = reg!(src).clone();
                    match reg!(slot) {
                        Value::Boxed(b) => *b.borrow_mut() = v,
                        _ => {
                            throw!(corrupt("assignment through a register without a box"), None)
                        }
                    }
                    continue;
                }
                Op::MakeBox(slot) => {
                    let place = reg_mut!(slot);
                    let v = std::mem::take(place);
                    *place = Value::Boxed(Rc::new(RefCell::new(v)));
                    continue;
                }
                Op::Capture(dst, i) => {
                    // A closure's frame has its closure just below its registers.
                    let v = match self.stack.get(base - 1) {
                        Some(Value::Fn(c)) => match c.captures.get(i as usize) {
                            Some(Value::Int(n)) => Err(*n),
                            Some(v) => Ok(v.clone()),
                            None => throw!(corrupt("capture out of range"), None),
                        },
                        _ => throw!(corrupt("capture outside a closure"), None),
                    };
                    match v {
                        Err(n) => set_int(reg_mut!(dst), n),
                        Ok(v) => set!(dst, v),
                    }
                    continue;
                }
                Op::CaptureBoxed(dst, i) => {
                    let v = match check!(self.capture(i)) {
                        Value::Boxed(b) => b.borrow().clone(),
                        other => other.clone(),
                    };
                    set!(dst, v);
                    continue;
                }
                Op::SetCaptureBoxed(i, src) => {
                    let v = reg!(src).clone();
                    match check!(self.capture(i)) {
                        Value::Boxed(b) => *b.borrow_mut() = v,
                        _ => {
                            throw!(corrupt("assignment through a capture without a box"), None)
                        }
                    }
                    continue;
                }
                Op::Global(dst, g) => {
                    let global = global!(g);
                    let value = global.value.borrow().clone();
                    match value {
                        Some(v) => set!(dst, v),
                        None => {
                            let err = crate::error::unbound_variable(global.name, false);
                            throw!(err, Some(global.name.name()));
                        }
                    }
                    continue;
                }
                Op::SetGlobal(g, src) | Op::DefineGlobal(g, src) => {
                    let v = reg!(src).clone();
                    let global = global!(g);
                    if matches!(op, Op::SetGlobal(..)) && !global.is_bound() {
                        let err = crate::error::unbound_variable(global.name, true);
                        throw!(err, None);
                    }
                    global.set(v);
                    continue;
                }
                Op::Jump(t) => {
                    jump!(t as usize);
                    continue;
                }
                Op::JumpIfFalse(r, t) => {
                    if !reg!(r).is_truthy() {
                        jump!(t as usize);
                    }
                    continue;
                }
                Op::JumpIfTrue(r, t) => {
                    if reg!(r).is_truthy() {
                        jump!(t as usize);
                    }
                    continue;
                }
                Op::JumpIfUnbound(g, t) => {
                    let global = global!(g);
                    if !global.is_bound() {
                        jump!(t as usize);
                    }
                    continue;
                }
                Op::TailCall(r, n) => Next::Call(r, n, true),
                Op::Call(r, n) => Next::Call(r, n, false),
                Op::TailCallGlobal(g, r, n) | Op::CallGlobal(g, r, n) => {
                    let tail = matches!(op, Op::TailCallGlobal(..));
                    let global = global!(g);
                    let name = global.name;
                    // What to do: loop, call a closure (its pointer only: a whole value
                    // moved through a temporary stalls the next read), call a plain native
                    // right here, call another value.
                    enum Callee {
                        Loop,
                        Closure(Rc<Closure>),
                        Pure(crate::value::NativeFn, &'static str),
                        Other(Option<Value>),
                    }
                    let callee = {
                        let value = global.value.borrow();
                        // A loop: a tail call of the global that holds the running closure.
                        let looping = tail
                            && self.fuel != Some(0)
                            && !proto.rest
                            && proto.params == n
                            && self.frames.last().is_some_and(|f| f.is_closure)
                            && matches!(
                                (&*value, self.stack.get(base - 1)),
                                (Some(Value::Fn(a)), Some(Value::Fn(b))) if Rc::ptr_eq(a, b)
                            );
                        let argc = usize::from(n);
                        match &*value {
                            _ if looping => Callee::Loop,
                            Some(Value::Fn(f)) => Callee::Closure(f.clone()),
                            Some(Value::Native(native))
                                if argc >= native.min_args
                                    && native.max_args.is_none_or(|max| argc <= max) =>
                            {
                                match native.kind {
                                    NativeKind::Pure(f) => Callee::Pure(f, native.name),
                                    _ => Callee::Other(Some(Value::Native(native.clone()))),
                                }
                            }
                            other => Callee::Other(other.clone()),
                        }
                    };
                    match callee {
                        Callee::Loop => restart!(r, n),
                        Callee::Closure(f) => {
                            // A call (not a tail call) enters at once.
                            if !tail && self.fuel != Some(0) && self.frames.len() < self.max_depth {
                                if let Some(code) = exact_code!(&f, n) {
                                    set!(r, Value::Fn(f));
                                    enter!(r, code);
                                }
                            }
                            set!(r, Value::Fn(f))
                        }
                        Callee::Pure(f, site) => {
                            let from = base + r as usize + 1;
                            let Some(args) = self.stack.get(from..from + n as usize) else {
                                throw!(corrupt("call arguments out of range"), None);
                            };
                            match f(args) {
                                Ok(v) => {
                                    self.clear(from, from + n as usize);
                                    set!(r, v);
                                    continue;
                                }
                                Err(err) => throw!(err, Some(site)),
                            }
                        }
                        Callee::Other(Some(v)) => set!(r, v),
                        Callee::Other(None) => {
                            let err = crate::error::unbound_variable(name, false);
                            throw!(err, Some(name.name()));
                        }
                    }
                    Next::Call(r, n, tail)
                }
                Op::Return(r) if self.frames.len() > 1 => {
                    // An integer result travels as a number (see `set_int`).
                    let result = match reg_mut!(r) {
                        Value::Int(n) => Err(*n),
                        other => Ok(std::mem::take(other)),
                    };
                    let end = base + proto.slots as usize;
                    if let Some(registers) = self.stack.get_mut(base..end) {
                        for v in registers {
                            if !v.is_plain() {
                                *v = Value::Nil;
                            }
                        }
                    }
                    let Some((ret, callee)) = self.frames.pop().map(|f| (f.ret, f.base - 1)) else {
                        throw!(corrupt("return without a frame"), None);
                    };
                    if ret != callee {
                        // A rebound primitive's call: its function sat above the frame.
                        self.clear(callee, callee + 1);
                    }
                    self.end_fuel_frame();
                    if let Some(place) = self.stack.get_mut(ret) {
                        match result {
                            Err(n) => set_int(place, n),
                            Ok(v) => store(place, v),
                        }
                    }
                    reload!();
                    continue;
                }
                Op::Return(r) => {
                    let result = std::mem::take(reg_mut!(r));
                    let flow = self.do_return(result);
                    flow!(flow);
                    continue;
                }
                Op::SelfClosure(dst) => {
                    let this = match self.stack.get(base - 1) {
                        Some(Value::Fn(c)) => c.clone(),
                        _ => throw!(corrupt("self-closure outside a closure"), None),
                    };
                    set!(dst, Value::Fn(this));
                    continue;
                }
                Op::Closure(dst, i) => {
                    let v = check!(self.make_closure(&proto, base, i));
                    set!(dst, v);
                    continue;
                }
                Op::List(dst, from, n) => {
                    let items = check!(self.take_list(base + from as usize, n as usize));
                    set!(dst, Value::List(items));
                    continue;
                }
                Op::Dict(dst, from, n) => {
                    let from = base + from as usize;
                    let Some(items) = self.stack.get_mut(from..from + n as usize) else {
                        throw!(corrupt("register out of range"), None);
                    };
                    let mut dict = Dict::new();
                    let mut bad = None;
                    for pair in items.chunks_mut(2) {
                        if let [k, v] = pair {
                            if k.is_function() {
                                bad = Some(k.clone());
                                break;
                            }
                            dict.insert(Key(std::mem::take(k)), std::mem::take(v));
                        }
                    }
                    if let Some(k) = bad {
                        throw!(type_error("a function cannot be a dict key", vec![k]), None);
                    }
                    set!(dst, Value::Dict(dict));
                    continue;
                }
                Op::Element(dst, c, from, n) => {
                    let tag = check!(proto
                        .consts
                        .get(c as usize)
                        .ok_or_else(|| corrupt("constant out of range")))
                    .clone();
                    let items = check!(self.take_list(base + from as usize, n as usize));
                    set!(dst, Value::List(List::cons(tag, items)));
                    continue;
                }
                Op::PushGuard(r, target) => {
                    self.handlers.push(Handler {
                        frames: self.frames.len(),
                        dst: base + r as usize,
                        target: target as usize,
                    });
                    continue;
                }
                Op::PopGuard => {
                    self.handlers.pop();
                    continue;
                }
                Op::Perform(dst, src) => {
                    let request = reg!(src).clone();
                    save_ip!();
                    if !self.spend_fuel() {
                        throw!(crate::error::out_of_fuel(), None);
                    }
                    self.perform_dst = base + dst as usize;
                    return Step::Perform(request);
                }
                Op::DefMacro(g, src) | Op::DefComp(g, _, src) => {
                    let v = std::mem::take(reg_mut!(src));
                    let global = global!(g);
                    let Value::Fn(closure) = v else {
                        throw!(corrupt("definition of a non-function"), None);
                    };
                    let defined = if let Op::DefComp(_, keys, _) = *op {
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
                    continue;
                }
                Op::DefTest(c, src) => {
                    let thunk = std::mem::take(reg_mut!(src));
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
                    continue;
                }
                Op::Prim2(p, dst, a, b, g) => {
                    // Integer fast path, inline; a comparison feeding a branch branches at once.
                    let x = reg!(a).as_int();
                    let y = reg!(b).as_int();
                    if let (Some(x), Some(y)) = (x, y) {
                        if builtin!(g) {
                            deliver_int!(dst, int_prim(p, x, y));
                        }
                    } else if p == Prim::Cons && matches!(reg!(b), Value::List(_)) && builtin!(g) {
                        // Operands at or above `dst` are temporaries: taken, not copied.
                        let mut operand = |r: u16| match self.stack.get_mut(base + r as usize) {
                            Some(v) if r >= dst => std::mem::take(v),
                            Some(v) => v.clone(),
                            None => Value::Nil,
                        };
                        let (head, tail) = (operand(a), operand(b));
                        if let Value::List(tail) = tail {
                            set!(dst, Value::List(List::cons(head, tail)));
                            continue;
                        }
                    }
                    let operands = Operands::Two(base + a as usize, base + b as usize);
                    slow_prim!(p, g, dst, operands)
                }
                Op::PrimInt(p, dst, a, k, g) => {
                    if let Some(x) = reg!(a).as_int() {
                        if builtin!(g) {
                            deliver_int!(dst, int_prim(p, x, i64::from(k)));
                        }
                    }
                    slow_prim!(p, g, dst, Operands::RegInt(base + a as usize, k))
                }
                Op::Prim(p, dst, a, g) => {
                    // One-operand fast paths, inline.
                    if p.arity() == 1 && builtin!(g) {
                        if let Some(result) = unary_prim(p, reg!(a)) {
                            if a > dst {
                                *reg_mut!(a) = Value::Nil;
                            }
                            deliver!(dst, result);
                            continue;
                        }
                    }
                    slow_prim!(p, g, dst, Operands::From(base + a as usize))
                }
                Op::Add(dst, a, b, g) => int2!(Prim::Add, dst, a, b, g),
                Op::Sub(dst, a, b, g) => int2!(Prim::Sub, dst, a, b, g),
                Op::Mul(dst, a, b, g) => int2!(Prim::Mul, dst, a, b, g),
                Op::Mod(dst, a, b, g) => int2!(Prim::Mod, dst, a, b, g),
                Op::Lt(dst, a, b, g) => int2!(Prim::Lt, dst, a, b, g),
                Op::Gt(dst, a, b, g) => int2!(Prim::Gt, dst, a, b, g),
                Op::Le(dst, a, b, g) => int2!(Prim::Le, dst, a, b, g),
                Op::Ge(dst, a, b, g) => int2!(Prim::Ge, dst, a, b, g),
                Op::Eq(dst, a, b, g) => int2!(Prim::Eq, dst, a, b, g),
                Op::AddInt(dst, a, k, g) => int_k!(Prim::Add, dst, a, k, g),
                Op::SubInt(dst, a, k, g) => int_k!(Prim::Sub, dst, a, k, g),
                Op::MulInt(dst, a, k, g) => int_k!(Prim::Mul, dst, a, k, g),
                Op::ModInt(dst, a, k, g) => int_k!(Prim::Mod, dst, a, k, g),
                Op::LtInt(dst, a, k, g) => int_k!(Prim::Lt, dst, a, k, g),
                Op::GtInt(dst, a, k, g) => int_k!(Prim::Gt, dst, a, k, g),
                Op::LeInt(dst, a, k, g) => int_k!(Prim::Le, dst, a, k, g),
                Op::GeInt(dst, a, k, g) => int_k!(Prim::Ge, dst, a, k, g),
                Op::EqInt(dst, a, k, g) => int_k!(Prim::Eq, dst, a, k, g),
                Op::Not(dst, a, g) => unary!(Prim::Not, dst, a, g),
                Op::IsNil(dst, a, g) => unary!(Prim::IsNil, dst, a, g),
                Op::IsEmpty(dst, a, g) => unary!(Prim::IsEmpty, dst, a, g),
                Op::First(dst, a, g) => unary!(Prim::First, dst, a, g),
                Op::Rest(dst, a, g) => unary!(Prim::Rest, dst, a, g),
                Op::Inc(dst, a, g) => unary!(Prim::Inc, dst, a, g),
                Op::Dec(dst, a, g) => unary!(Prim::Dec, dst, a, g),
            };
            match next {
                Next::Call(r, n, true) => tail_call!(r, n),
                Next::Call(r, n, false) => call!(r, n),
            }
        }
    }

    /// A primitive the inline fast paths did not answer: in-place `assoc`, `cons`, else the
    /// native (or whatever the global holds now, when rebound). Operands at or above `dst`
    /// are temporaries and are taken.
    fn prim(
        &mut self,
        prim: Prim,
        g: u16,
        proto: &Proto,
        dst: usize,
        operands: Operands,
        engine: &mut Engine,
    ) -> Flow {
        let argc = prim.arity() as usize;
        let registers: [Option<usize>; 3] = match operands {
            Operands::From(a) => [0, 1, 2].map(|i| (i < argc).then_some(a + i)),
            Operands::Two(a, b) => [Some(a), Some(b), None],
            Operands::RegInt(a, _) => [Some(a), None, None],
        };
        let mut args: [Value; 3] = Default::default();
        for (arg, r) in args.iter_mut().zip(registers) {
            let Some(r) = r else { continue };
            let Some(place) = self.stack.get_mut(r) else {
                return self.throw(corrupt("register out of range"), None);
            };
            *arg = if r >= dst {
                std::mem::take(place)
            } else {
                place.clone()
            };
        }
        if let Operands::RegInt(_, k) = operands {
            args[1] = Value::Int(i64::from(k));
        }
        let Some(global) = proto.globals.get(g as usize) else {
            return self.throw(corrupt("global out of range"), None);
        };
        if !global.builtin.get() {
            // Rebound: call what the global holds now, from registers above the frame.
            let current = global.value.borrow().clone();
            let Some(f) = current else {
                let err = crate::error::unbound_variable(global.name, false);
                return self.throw(err, Some(global.name.name()));
            };
            let at = self.frame_end();
            self.place_call(at, f, args.into_iter().take(argc).collect());
            return self.call(at, argc, dst, false, engine);
        }
        let [first, second, third] = args;
        let result = match (prim, first) {
            // The VM owns its operands: a dict nothing else holds is updated in place.
            (Prim::Assoc, dict @ (Value::Dict(_) | Value::Nil)) if !second.is_function() => {
                let mut map = match dict {
                    Value::Dict(map) => map,
                    _ => Dict::new(),
                };
                map.insert(Key(second), third);
                Ok(Value::Dict(map))
            }
            (Prim::Cons, head) => match second {
                Value::List(tail) => Ok(Value::List(List::cons(head, tail))),
                second => self.native(global, &[head, second]),
            },
            (_, first) => self.native(global, &[first, second, third][..argc]),
        };
        match result {
            Ok(v) => {
                if let Some(place) = self.stack.get_mut(dst) {
                    *place = v;
                }
                Flow::Next(false)
            }
            Err((err, site)) => self.throw(err, Some(site)),
        }
    }

    /// Calls the core native a primitive global holds.
    fn native(
        &self,
        global: &crate::expander::Global,
        args: &[Value],
    ) -> Result<Value, (Value, &'static str)> {
        let native = match &*global.value.borrow() {
            Some(Value::Native(n)) => n.clone(),
            _ => return Err((corrupt("primitive global lost its native"), "prim")),
        };
        let NativeKind::Pure(f) = native.kind else {
            return Err((corrupt("primitive is not a plain native"), "prim"));
        };
        f(args).map_err(|err| (err, native.name))
    }
}

/// Overwrites a register: the old value is dropped without a call when it holds nothing to
/// free (numbers, booleans, nil — most registers most of the time).
#[inline(always)]
fn store(place: &mut Value, v: Value) {
    // Tested before the write, so the plain case writes over the old value without first
    // copying it out.
    if place.is_plain() {
        std::mem::forget(std::mem::replace(place, v));
        return;
    }
    match std::mem::replace(place, v) {
        // A list is most often shared: released inline (see `List`'s `Drop`).
        Value::List(list) => drop(list),
        old => drop(old),
    }
}

/// A one-operand primitive's answer when it has a fast one.
#[inline(always)]
fn unary_prim(prim: Prim, v: &Value) -> Option<Value> {
    match (prim, v) {
        (Prim::Not, v) => Some(Value::Bool(!v.is_truthy())),
        (Prim::IsNil, v) => Some(Value::Bool(matches!(v, Value::Nil))),
        (Prim::First, Value::List(l)) => Some(l.first().cloned().unwrap_or(Value::Nil)),
        (Prim::Rest, Value::List(l)) => Some(Value::List(l.rest())),
        (Prim::IsEmpty, Value::List(l)) => Some(Value::Bool(l.is_empty())),
        (Prim::Inc, Value::Int(n)) => n.checked_add(1).map(Value::Int),
        (Prim::Dec, Value::Int(n)) => n.checked_sub(1).map(Value::Int),
        (Prim::Abs, Value::Int(n)) => n.checked_abs().map(Value::Int),
        _ => None,
    }
}

/// A primitive's answer on two integers: small enough to stay in machine registers.
enum IntOut {
    Int(i64),
    Bool(bool),
    /// No integer answer (overflow, a zero divisor): the general path decides.
    None,
}

/// A primitive on two integers.
#[inline(always)]
fn int_prim(prim: Prim, a: i64, b: i64) -> IntOut {
    let int = |n: Option<i64>| n.map_or(IntOut::None, IntOut::Int);
    match prim {
        Prim::Add => int(a.checked_add(b)),
        Prim::Sub => int(a.checked_sub(b)),
        Prim::Mul => int(a.checked_mul(b)),
        Prim::Lt => IntOut::Bool(a < b),
        Prim::Gt => IntOut::Bool(a > b),
        Prim::Le => IntOut::Bool(a <= b),
        Prim::Ge => IntOut::Bool(a >= b),
        Prim::Eq => IntOut::Bool(a == b),
        Prim::Mod if b > 0 => IntOut::Int(a.rem_euclid(b)),
        _ => IntOut::None,
    }
}

/// Writes an integer into a register: only the number when it holds one already. Writing
/// whole values through memory costs store-forwarding stalls on the next read.
#[inline(always)]
fn set_int(place: &mut Value, n: i64) {
    match place {
        Value::Int(old) => *old = n,
        _ => store(place, Value::Int(n)),
    }
}

#[inline(always)]
fn set_bool(place: &mut Value, b: bool) {
    match place {
        Value::Bool(old) => *old = b,
        _ => store(place, Value::Bool(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytecode::{CaptureFrom, ProtoParts};
    use crate::engine::Backend;

    fn proto(slots: u16, code: Vec<Op>, protos: Vec<Rc<Proto>>) -> Rc<Proto> {
        Rc::new(
            Proto::new(ProtoParts {
                name: None,
                params: 0,
                rest: false,
                slots,
                captures: Vec::<CaptureFrom>::new(),
                code,
                consts: vec![],
                globals: vec![],
                protos,
                lines: vec![],
                file: None,
            })
            .unwrap(),
        )
    }

    /// A guard its function returns past (damaged code: the compiler always pops its
    /// guards) must not send the raise to its target in another function, whose code may
    /// be shorter: the fetch there reads unchecked.
    #[test]
    fn a_guard_left_behind_by_its_function_is_an_error_not_a_jump() {
        let leaves_a_guard = proto(
            1,
            vec![
                Op::PushGuard(0, 4),
                Op::Nil(0),
                Op::Nil(0),
                Op::Nil(0),
                Op::Nil(0),
                Op::Return(0),
            ],
            vec![],
        );
        // Calls it, then calls nil (which raises) in a function of four instructions.
        let top = proto(
            2,
            vec![
                Op::Closure(0, 0),
                Op::Call(0, 0),
                Op::Call(1, 0),
                Op::Return(0),
            ],
            vec![leaves_a_guard],
        );
        let mut engine = Engine::with_backend(Backend::Vm);
        let mut machine = Machine::new(top, None, 100);
        match machine.run(&mut engine) {
            Step::Error(e) => {
                let text = crate::error::describe(&e);
                assert!(text.contains("a guard outlived its function"), "{text}");
            }
            _ => panic!("the raise must end the run with an error"),
        }
    }
}
