//! The compiler: the expander's [`Expr`] to bytecode [`Proto`]s for the VM.
//!
//! The expander gives every variable a frame (lambda, `let`, guard handler) and a slot. Here
//! a frame becomes a range of local slots in its function, so `let` costs no allocation.
//! Variables of an enclosing function become captures, copied into the closure when it is
//! made. A variable that is both captured and assigned (`set!`, internal `define`, named
//! `let`) lives in a box so every closure sees assignments; a pre-pass finds those.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::bytecode::{CaptureFrom, Op, Operand, Prim, Proto, ProtoParts};
use crate::error::syntax_error;
use crate::expander::{Expr, ExprRef, Global, LambdaCode, SrcLoc};
use crate::value::{Pos, Value};

/// A variable: the identity of the node that made its frame, and its slot in that frame.
type Var = (usize, usize);

fn key_of<T>(rc: &Rc<T>) -> usize {
    Rc::as_ptr(rc) as *const () as usize
}

#[derive(Default)]
struct Analysis {
    /// The functions (lambda keys) that reference each variable of an enclosing function.
    captured_by: HashMap<Var, HashSet<usize>>,
    /// How often each variable is assigned, and the lambda of its one assignment if it is
    /// `(set! var (fn ...))`-shaped (named `let`, local `define` of a function).
    assigned: HashMap<Var, (usize, Option<usize>)>,
    /// Lambda keys of the functions being walked, innermost last.
    functions: Vec<usize>,
}

impl Analysis {
    /// A variable assigned once, to a lambda, and referenced from no other function than
    /// that lambda: the lambda reaches itself with `SelfClosure`, no capture, no box.
    fn self_bound(&self, var: Var) -> Option<usize> {
        let (count, lambda) = self.assigned.get(&var)?;
        let lambda = (*count == 1).then_some(*lambda).flatten()?;
        let users = self.captured_by.get(&var)?;
        users.iter().all(|u| *u == lambda).then_some(lambda)
    }

    fn boxed(&self, var: Var) -> bool {
        self.captured_by.contains_key(&var)
            && self.assigned.contains_key(&var)
            && self.self_bound(var).is_none()
    }

    /// `frames`: (frame key, function level) from the outermost.
    fn walk(&mut self, expr: &ExprRef, frames: &mut Vec<(usize, usize)>, level: usize) {
        match &**expr {
            Expr::Const(_) | Expr::Global { .. } => {}
            Expr::Local { depth, index } => self.note(frames, *depth, *index, level, None),
            Expr::SetLocal {
                depth,
                index,
                value,
            } => {
                let lambda = match &**value {
                    Expr::Lambda(code) => Some(key_of(code)),
                    _ => None,
                };
                self.note(frames, *depth, *index, level, Some(lambda));
                self.walk(value, frames, level);
            }
            Expr::CallOrElement { call, element, .. } => {
                self.walk(call, frames, level);
                self.walk(element, frames, level);
            }
            Expr::SetGlobal { value, .. } | Expr::Define { value, .. } => {
                self.walk(value, frames, level)
            }
            Expr::If(c, t, e) => {
                self.walk(c, frames, level);
                self.walk(t, frames, level);
                self.walk(e, frames, level);
            }
            Expr::Lambda(code)
            | Expr::DefMacro { code, .. }
            | Expr::DefComp { code, .. }
            | Expr::DefTest { code, .. } => {
                frames.push((key_of(code), level + 1));
                self.functions.push(key_of(code));
                self.walk(&code.body, frames, level + 1);
                self.functions.pop();
                frames.pop();
            }
            Expr::Let { inits, body, .. } => {
                for init in inits {
                    self.walk(init, frames, level);
                }
                frames.push((key_of(expr), level));
                self.walk(body, frames, level);
                frames.pop();
            }
            Expr::Guard { body, handler } => {
                self.walk(body, frames, level);
                frames.push((key_of(expr), level));
                self.walk(handler, frames, level);
                frames.pop();
            }
            Expr::Perform { request, .. } => self.walk(request, frames, level),
            // Sequences, calls and constructors: every child in order.
            other => {
                for item in other.evaluated_in_order().unwrap_or_default() {
                    self.walk(item, frames, level);
                }
            }
        }
    }

    fn note(
        &mut self,
        frames: &[(usize, usize)],
        depth: usize,
        index: usize,
        level: usize,
        set: Option<Option<usize>>,
    ) {
        let Some(&(key, home)) = frames
            .len()
            .checked_sub(depth + 1)
            .and_then(|i| frames.get(i))
        else {
            return;
        };
        if home != level {
            let function = self.functions.last().copied().unwrap_or(0);
            self.captured_by
                .entry((key, index))
                .or_default()
                .insert(function);
        }
        if let Some(lambda) = set {
            let entry = self.assigned.entry((key, index)).or_insert((0, lambda));
            entry.0 += 1;
        }
    }
}

struct FrameInfo {
    key: usize,
    level: usize,
    base: u16,
}

struct FnState {
    /// The lambda this function was compiled from (0 for a top-level form).
    key: usize,
    name: Option<crate::value::Symbol>,
    params: u16,
    rest: bool,
    code: Vec<Op>,
    consts: Vec<Value>,
    globals: Vec<Rc<Global>>,
    global_index: HashMap<usize, u16>,
    protos: Vec<Rc<Proto>>,
    lines: Vec<(u32, Pos)>,
    captures: Vec<(CaptureFrom, Var)>,
    /// The first free register: below it, the function's locals in scope and temporaries in
    /// use; from it up, free.
    top: u16,
    /// Registers the frame needs (the highest `top` reached).
    max_top: u16,
    /// Locals a primitive being compiled reads in place: a last read of one copies instead
    /// of moving it out.
    pinned: Vec<u16>,
}

impl FnState {
    fn new(
        key: usize,
        name: Option<crate::value::Symbol>,
        params: u16,
        rest: bool,
        slots: u16,
    ) -> FnState {
        FnState {
            key,
            name,
            params,
            rest,
            code: Vec::new(),
            consts: Vec::new(),
            globals: Vec::new(),
            global_index: HashMap::new(),
            protos: Vec::new(),
            lines: Vec::new(),
            captures: Vec::new(),
            top: slots,
            max_top: slots,
            pinned: Vec::new(),
        }
    }
}

pub struct Compiler {
    analysis: Analysis,
    /// `Local` nodes that are the last read of their variable before a tail call: they move
    /// the value out of the register instead of copying it (see `Op::Take`).
    moves: HashSet<usize>,
    fns: Vec<FnState>,
    frames: Vec<FrameInfo>,
    /// Named `let` loops compiled inline (see [`Compiler::inline_loop`]), innermost last.
    loops: Vec<LoopInfo>,
    file: Option<Rc<str>>,
}

/// A named `let` whose function is only ever called in tail position of its own body: it
/// runs in the enclosing function's frame, its parameters are registers there, and a call
/// to it assigns them and jumps back — no closure, no captures, no call.
#[derive(Clone, Copy)]
struct LoopInfo {
    /// The variable holding the loop function: (its frame's key, slot).
    var: Var,
    level: usize,
    params: u16,
    arity: u16,
    start: u32,
    /// Whether the loop's own tail positions are tail positions of the function too.
    fn_tail: bool,
    /// Compile-time frames below the loop function's own.
    frames: usize,
}

type Compiled = Result<(), Value>;

fn too_big(what: &str) -> Value {
    syntax_error(
        format!("too many {what} in one function for the bytecode format"),
        vec![],
    )
}

/// Compiles one expanded top-level form into a zero-parameter prototype.
pub fn compile_toplevel(expr: &ExprRef, file: Option<Rc<str>>) -> Result<Rc<Proto>, Value> {
    let mut analysis = Analysis::default();
    analysis.walk(expr, &mut Vec::new(), 0);
    let mut c = Compiler {
        analysis,
        moves: HashSet::new(),
        fns: vec![FnState::new(0, None, 0, false, 0)],
        frames: Vec::new(),
        loops: Vec::new(),
        file,
    };
    let result = c.alloc()?;
    c.expr(expr, result, true)?;
    c.emit(Op::Return(result));
    let state = c.fns.pop().ok_or_else(|| too_big("functions"))?;
    Ok(Rc::new(c.finish(state)?))
}

impl Compiler {
    fn level(&self) -> usize {
        self.fns.len() - 1
    }

    fn state(&mut self) -> &mut FnState {
        let last = self.fns.len() - 1;
        &mut self.fns[last]
    }

    fn emit(&mut self, op: Op) -> usize {
        let code = &mut self.state().code;
        code.push(op);
        code.len() - 1
    }

    fn here(&mut self) -> u32 {
        self.state().code.len() as u32
    }

    fn patch(&mut self, at: usize, target: u32) {
        let op = &mut self.state().code[at];
        *op = match *op {
            Op::Jump(_) => Op::Jump(target),
            Op::JumpIfFalse(r, _) => Op::JumpIfFalse(r, target),
            Op::JumpIfTrue(r, _) => Op::JumpIfTrue(r, target),
            Op::JumpIfUnbound(g, _) => Op::JumpIfUnbound(g, target),
            Op::PushGuard(r, _) => Op::PushGuard(r, target),
            other => other,
        };
    }

    fn mark(&mut self, loc: &Option<Rc<SrcLoc>>) {
        if let Some(loc) = loc {
            let at = self.here();
            let lines = &mut self.state().lines;
            match lines.last_mut() {
                Some((last, pos)) if *last == at => *pos = loc.pos,
                Some((_, pos)) if *pos == loc.pos => {}
                _ => lines.push((at, loc.pos)),
            }
        }
    }

    fn constant(&mut self, v: Value) -> Result<u32, Value> {
        let consts = &mut self.state().consts;
        consts.push(v);
        u32::try_from(consts.len() - 1).map_err(|_| too_big("constants"))
    }

    fn global(&mut self, g: &Rc<Global>) -> Result<u16, Value> {
        let key = key_of(g);
        let state = self.state();
        if let Some(i) = state.global_index.get(&key) {
            return Ok(*i);
        }
        let i = u16::try_from(state.globals.len()).map_err(|_| too_big("globals"))?;
        state.globals.push(g.clone());
        state.global_index.insert(key, i);
        Ok(i)
    }

    /// The function's prototype. It passes `Proto::new`'s checks unless the compiler has a
    /// bug, which then surfaces as an error rather than as code the VM cannot run.
    fn finish(&self, s: FnState) -> Result<Proto, Value> {
        Proto::new(ProtoParts {
            name: s.name,
            params: s.params,
            rest: s.rest,
            slots: s.max_top,
            captures: s.captures.into_iter().map(|(from, _)| from).collect(),
            code: s.code,
            consts: s.consts,
            globals: s.globals,
            protos: s.protos,
            lines: s.lines,
            file: self.file.clone(),
        })
        .map_err(|why| {
            crate::error::type_error(format!("the compiler made invalid bytecode: {why}"), vec![])
        })
    }

    /// The capture index of `var` (living in slot `slot` of function `home`) in function
    /// `level`, threading it through every function in between.
    fn capture(&mut self, level: usize, var: Var, home: usize, slot: u16) -> Result<u16, Value> {
        if let Some(i) = self.fns[level].captures.iter().position(|(_, v)| *v == var) {
            return Ok(i as u16);
        }
        let from = if level - 1 == home {
            CaptureFrom::Local(slot)
        } else {
            CaptureFrom::Capture(self.capture(level - 1, var, home, slot)?)
        };
        let captures = &mut self.fns[level].captures;
        captures.push((from, var));
        u16::try_from(captures.len() - 1).map_err(|_| too_big("captured variables"))
    }

    /// Where a `Local{depth,index}` lives now: (is it a capture, index, is it boxed).
    fn resolve(&mut self, depth: usize, index: usize) -> Result<(bool, u16, bool), Value> {
        let Some(frame) = self
            .frames
            .len()
            .checked_sub(depth + 1)
            .and_then(|i| self.frames.get(i))
        else {
            return Err(syntax_error(
                "internal: a local outside every frame",
                vec![],
            ));
        };
        let (key, home, base) = (frame.key, frame.level, frame.base);
        let slot = u16::try_from(base as usize + index).map_err(|_| too_big("locals"))?;
        let boxed = self.analysis.boxed((key, index));
        let level = self.level();
        if home == level {
            Ok((false, slot, boxed))
        } else {
            Ok((true, self.capture(level, (key, index), home, slot)?, boxed))
        }
    }

    /// Is this local, seen from the function being compiled, that function itself?
    fn is_self_reference(&self, depth: usize, index: usize) -> bool {
        let Some(frame) = self
            .frames
            .len()
            .checked_sub(depth + 1)
            .and_then(|i| self.frames.get(i))
        else {
            return false;
        };
        frame.level != self.level()
            && self
                .fns
                .last()
                .is_some_and(|f| self.analysis.self_bound((frame.key, index)) == Some(f.key))
    }

    /// Reserves `n` registers at the top (a frame's locals, or one temporary); returns the
    /// first.
    fn reserve(&mut self, n: usize) -> Result<u16, Value> {
        let state = self.state();
        let base = state.top;
        let top = u16::try_from(base as usize + n).map_err(|_| too_big("registers"))?;
        state.top = top;
        state.max_top = state.max_top.max(top);
        Ok(base)
    }

    /// A new temporary register.
    fn alloc(&mut self) -> Result<u16, Value> {
        self.reserve(1)
    }

    fn top(&mut self) -> u16 {
        self.state().top
    }

    /// Frees every register from `top` up.
    fn free_to(&mut self, top: u16) {
        self.state().top = top;
    }

    /// Makes the frame `key` visible at registers from `base` (reserved already).
    fn open_frame(&mut self, key: usize, base: u16) {
        let level = self.level();
        self.frames.push(FrameInfo { key, level, base });
    }

    fn close_frame(&mut self, base: u16) {
        self.frames.pop();
        self.free_to(base);
    }

    /// Boxes the slots of the frame `key` that need it.
    fn box_slots(&mut self, key: usize, base: u16, range: std::ops::Range<usize>) {
        for i in range {
            if self.analysis.boxed((key, i)) {
                self.emit(Op::MakeBox(base + i as u16));
            }
        }
    }

    /// Compiles `expr` so that its value lands in register `dst`. `dst` is a temporary or a
    /// local being initialised: every register it reads that is at or above `dst` is one of
    /// its own temporaries (the VM takes those, see `Op::Prim`). Temporaries it uses are
    /// freed again.
    fn expr(&mut self, expr: &ExprRef, dst: u16, tail: bool) -> Compiled {
        let top = self.top();
        let result = self.expr_inner(expr, dst, tail);
        self.free_to(top);
        result
    }

    /// The register that holds `expr`'s value: a local's own register when the local is
    /// read in place (never assigned, so a later operand cannot change it) and lies below
    /// `below`, else a new temporary with the value compiled into it. A primitive passes its
    /// `dst`: the VM takes the operands at or above it, which must be temporaries.
    fn operand(&mut self, expr: &ExprRef, below: u16) -> Result<u16, Value> {
        if let Some(slot) = self.plain_local(expr)? {
            if slot < below {
                return Ok(slot);
            }
        }
        let r = self.alloc()?;
        self.expr(expr, r, false)?;
        Ok(r)
    }

    /// Compiles `items` into consecutive new temporaries; returns the first (`dst` when
    /// there are none, so every register named is one the frame has).
    fn consecutive(&mut self, items: &[ExprRef], dst: u16) -> Result<u16, Value> {
        if items.is_empty() {
            return Ok(dst);
        }
        let from = self.top();
        for item in items {
            let r = self.alloc()?;
            self.expr(item, r, false)?;
        }
        Ok(from)
    }

    fn expr_inner(&mut self, expr: &ExprRef, dst: u16, tail: bool) -> Compiled {
        match &**expr {
            Expr::Const(v) => {
                match v {
                    Value::Nil => self.emit(Op::Nil(dst)),
                    Value::Bool(true) => self.emit(Op::True(dst)),
                    Value::Bool(false) => self.emit(Op::False(dst)),
                    Value::Int(n) if i32::try_from(*n).is_ok() => {
                        self.emit(Op::Int(dst, *n as i32))
                    }
                    other => {
                        let c = self.constant(other.clone())?;
                        self.emit(Op::Const(dst, c))
                    }
                };
            }
            Expr::Local { depth, index } => {
                if self.is_self_reference(*depth, *index) {
                    self.emit(Op::SelfClosure(dst));
                    return Ok(());
                }
                let (captured, i, boxed) = self.resolve(*depth, *index)?;
                if !captured
                    && !boxed
                    && self.moves.contains(&key_of(expr))
                    && !self.state().pinned.contains(&i)
                {
                    self.emit(Op::Take(dst, i));
                    return Ok(());
                }
                if (captured, boxed, i) == (false, false, dst) {
                    return Ok(());
                }
                self.emit(match (captured, boxed) {
                    (false, false) => Op::Move(dst, i),
                    (false, true) => Op::LocalBoxed(dst, i),
                    (true, false) => Op::Capture(dst, i),
                    (true, true) => Op::CaptureBoxed(dst, i),
                });
            }
            Expr::Global { global, loc } => {
                let g = self.global(global)?;
                self.mark(loc);
                self.emit(Op::Global(dst, g));
            }
            Expr::CallOrElement {
                global,
                call,
                element,
            } => {
                let g = self.global(global)?;
                self.two_way(Op::JumpIfUnbound(g, 0), call, element, dst, tail)?;
            }
            Expr::SetLocal {
                depth,
                index,
                value,
            } => {
                let top = self.top();
                let src = self.operand(value, u16::MAX)?;
                let (captured, i, boxed) = self.resolve(*depth, *index)?;
                let temporary = src >= top;
                self.emit(match (captured, boxed) {
                    (false, false) if temporary => Op::Take(i, src),
                    (false, false) => Op::Move(i, src),
                    (false, true) => Op::SetLocalBoxed(i, src),
                    (true, true) => Op::SetCaptureBoxed(i, src),
                    // The analysis boxes every captured variable that is assigned.
                    (true, false) => {
                        return Err(syntax_error(
                            "internal: assignment to an unboxed capture",
                            vec![],
                        ))
                    }
                });
                self.emit(Op::Nil(dst));
            }
            Expr::SetGlobal { global, value } => {
                let src = self.operand(value, u16::MAX)?;
                let g = self.global(global)?;
                self.emit(Op::SetGlobal(g, src));
                self.emit(Op::Nil(dst));
            }
            Expr::Define { global, value } => {
                let src = self.operand(value, u16::MAX)?;
                let g = self.global(global)?;
                self.emit(Op::DefineGlobal(g, src));
                self.emit(Op::Nil(dst));
            }
            Expr::If(c, t, e) => {
                // The test's register is free again once the jump has read it.
                let top = self.top();
                let test = self.operand(c, u16::MAX)?;
                self.free_to(top);
                self.two_way(Op::JumpIfFalse(test, 0), t, e, dst, tail)?;
            }
            Expr::Seq(items) | Expr::And(items) | Expr::Or(items) if items.is_empty() => {
                self.expr(&Rc::new(Expr::Const(expr.empty_value())), dst, tail)?;
            }
            Expr::Seq(items) => {
                // Every item lands in `dst`; the last one's value stays.
                for (i, item) in items.iter().enumerate() {
                    let last = i + 1 == items.len();
                    self.expr(item, dst, tail && last)?;
                }
            }
            Expr::And(items) | Expr::Or(items) => {
                let is_and = matches!(&**expr, Expr::And(_));
                let mut exits = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let last = i + 1 == items.len();
                    self.expr(item, dst, tail && last)?;
                    if !last {
                        exits.push(self.emit(if is_and {
                            Op::JumpIfFalse(dst, 0)
                        } else {
                            Op::JumpIfTrue(dst, 0)
                        }));
                    }
                }
                let here = self.here();
                for at in exits {
                    self.patch(at, here);
                }
            }
            Expr::Lambda(code) => self.lambda(code, dst)?,
            Expr::Call { items, loc } => self.call(items, loc, dst, tail)?,
            Expr::Let { .. } if self.inline_loop(expr, dst, tail)? => {}
            Expr::Let { inits, slots, body } => {
                // The frame's registers first (above `dst`), then each init into its own
                // register, evaluated in the enclosing scope.
                let base = self.reserve(*slots)?;
                for (i, init) in inits.iter().enumerate() {
                    self.expr(init, base + i as u16, false)?;
                }
                // Registers are reused between frames: definitions start out nil.
                for i in inits.len()..*slots {
                    self.emit(Op::Nil(base + i as u16));
                }
                let key = key_of(expr);
                self.open_frame(key, base);
                self.box_slots(key, base, 0..*slots);
                let result = self.expr(body, dst, tail);
                self.close_frame(base);
                result?;
            }
            Expr::MakeList(items) => {
                let from = self.consecutive(items, dst)?;
                self.emit(Op::List(dst, from, count(items.len())?));
            }
            Expr::MakeDict(items) => {
                let from = self.consecutive(items, dst)?;
                self.emit(Op::Dict(dst, from, count(items.len())?));
            }
            Expr::MakeElement { tag, items } => {
                let from = self.consecutive(items, dst)?;
                let c = self.constant(Value::Symbol(*tag))?;
                self.emit(Op::Element(dst, c, from, count(items.len())?));
            }
            Expr::Guard { body, handler } => {
                // A raise lands in the register the handler's frame will have.
                let caught = self.top();
                let install = self.emit(Op::PushGuard(caught, 0));
                self.expr(body, dst, false)?;
                self.emit(Op::PopGuard);
                let to_end = self.emit(Op::Jump(0));
                let here = self.here();
                self.patch(install, here);
                let key = key_of(expr);
                let base = self.reserve(1)?;
                self.open_frame(key, base);
                self.box_slots(key, base, 0..1);
                let result = self.expr(handler, dst, tail);
                self.close_frame(base);
                result?;
                let here = self.here();
                self.patch(to_end, here);
            }
            Expr::Perform { request, loc } => {
                let src = self.operand(request, u16::MAX)?;
                self.mark(loc);
                self.emit(Op::Perform(dst, src));
            }
            Expr::DefMacro { global, code } => {
                let f = self.alloc()?;
                self.lambda(code, f)?;
                let g = self.global(global)?;
                self.emit(Op::DefMacro(g, f));
                self.emit(Op::Nil(dst));
            }
            Expr::DefComp { global, keys, code } => {
                let f = self.alloc()?;
                self.lambda(code, f)?;
                let g = self.global(global)?;
                let keys = Value::list(keys.iter().map(|k| Value::Symbol(*k)).collect());
                let c = self.constant(keys)?;
                self.emit(Op::DefComp(g, c, f));
                self.emit(Op::Nil(dst));
            }
            Expr::DefTest { name, code, loc } => {
                let f = self.alloc()?;
                self.lambda(code, f)?;
                let c = self.constant(Value::Str(name.clone()))?;
                self.mark(loc);
                self.emit(Op::DefTest(c, f));
                self.emit(Op::Nil(dst));
            }
        }
        Ok(())
    }

    /// `jump` (taken to `second`), then `first` and a jump over `second` — or, in tail
    /// position, a return instead of that jump.
    fn two_way(
        &mut self,
        jump: Op,
        first: &ExprRef,
        second: &ExprRef,
        dst: u16,
        tail: bool,
    ) -> Compiled {
        let to_second = self.emit(jump);
        self.expr(first, dst, tail)?;
        let to_end = if self.function_tail(tail) {
            self.emit(Op::Return(dst));
            None
        } else {
            Some(self.emit(Op::Jump(0)))
        };
        let here = self.here();
        self.patch(to_second, here);
        self.expr(second, dst, tail)?;
        if let Some(at) = to_end {
            let here = self.here();
            self.patch(at, here);
        }
        Ok(())
    }

    fn call(
        &mut self,
        items: &[ExprRef],
        loc: &Option<Rc<SrcLoc>>,
        dst: u16,
        tail: bool,
    ) -> Compiled {
        let Some(argc) = items.len().checked_sub(1) else {
            return Err(syntax_error("internal: a call without a function", vec![]));
        };
        let argc = count(argc)?;
        if let Some(lp) = self.loop_call(&items[0], tail) {
            // A last read of the loop's own variables moves the value (the round ends
            // here); the enclosing function's are read again next round.
            let frames = self.frames.len();
            let own = |(depth, _): (usize, usize)| frames - depth > lp.frames;
            self.moves.extend(
                last_reads_of(&items[1..])
                    .into_iter()
                    .filter(|(var, _)| own(*var))
                    .map(|(_, node)| node),
            );
            // The arguments, then the parameters all at once, then back to the start.
            let from = self.consecutive(&items[1..], dst)?;
            for i in 0..lp.arity {
                self.emit(Op::Take(lp.params + i, from + i));
            }
            self.mark(loc);
            self.emit(Op::Jump(lp.start));
            return Ok(());
        }
        let tail = self.function_tail(tail);
        if tail {
            self.moves.extend(last_reads(items));
        }
        if let Expr::Global { global, .. } = &*items[0] {
            let prim = match &*global.value.borrow() {
                Some(Value::Native(n)) if global.builtin.get() => {
                    Prim::lookup(n.name, argc as usize)
                }
                _ => None,
            };
            if let Some(prim) = prim {
                let g = self.global(global)?;
                let op = match &items[1..] {
                    [a, b] => {
                        let a = self.operand(a, dst)?;
                        match &**b {
                            Expr::Const(Value::Int(k)) if i32::try_from(*k).is_ok() => {
                                Op::binary(prim, dst, a, Operand::Int(*k as i32), g)
                            }
                            _ => {
                                // `a` read in place is read when the primitive runs, after
                                // `b`: `b` must not move it out meanwhile.
                                let pinned = a < dst;
                                if pinned {
                                    self.state().pinned.push(a);
                                }
                                // A last read of the list `cons` extends moves it: a
                                // list nothing else holds then grows in place.
                                let moved = prim == Prim::Cons && self.moves.contains(&key_of(b));
                                let b = self.operand(b, if moved { 0 } else { dst });
                                if pinned {
                                    self.state().pinned.pop();
                                }
                                Op::binary(prim, dst, a, Operand::Reg(b?), g)
                            }
                        }
                    }
                    [a] => Op::unary(prim, dst, self.operand(a, dst)?, g),
                    args => Op::Prim(prim, dst, self.consecutive(args, dst)?, g),
                };
                self.mark(loc);
                self.emit(op);
                return Ok(());
            }
        }
        // The function and its arguments in consecutive registers; the result lands in the
        // function's register (`dst` itself when it is the newest register).
        let f = if dst + 1 == self.top() {
            dst
        } else {
            self.alloc()?
        };
        let callee = match &*items[0] {
            Expr::Global { global, .. } => Some(self.global(global)?),
            _ => {
                self.expr(&items[0], f, false)?;
                None
            }
        };
        self.consecutive(&items[1..], f)?;
        self.mark(loc);
        self.emit(match (callee, tail) {
            (Some(g), true) => Op::TailCallGlobal(g, f, argc),
            (Some(g), false) => Op::CallGlobal(g, f, argc),
            (None, true) => Op::TailCall(f, argc),
            (None, false) => Op::Call(f, argc),
        });
        if f != dst {
            self.emit(Op::Take(dst, f));
        }
        Ok(())
    }

    /// The register of a local of this function that lives unboxed in it and is never
    /// assigned: safe to read in place.
    fn plain_local(&mut self, expr: &ExprRef) -> Result<Option<u16>, Value> {
        if let Expr::Local { depth, index } = &**expr {
            if self.is_self_reference(*depth, *index) {
                return Ok(None);
            }
            let key = self
                .frames
                .len()
                .checked_sub(depth + 1)
                .and_then(|i| self.frames.get(i))
                .map(|f| f.key);
            let assigned = key.is_some_and(|k| self.analysis.assigned.contains_key(&(k, *index)));
            let (captured, slot, boxed) = self.resolve(*depth, *index)?;
            if !captured && !boxed && !assigned {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Whether a tail position of the code being compiled is one of its function: not
    /// inside an inline loop that is not itself in tail position.
    fn function_tail(&self, tail: bool) -> bool {
        tail && self
            .loops
            .last()
            .filter(|lp| lp.level == self.level())
            .is_none_or(|lp| lp.fn_tail)
    }

    /// The innermost inline loop, when `callee` names it from a tail position of its body.
    fn loop_call(&self, callee: &ExprRef, tail: bool) -> Option<LoopInfo> {
        let lp = self.loops.last().filter(|lp| lp.level == self.level())?;
        let Expr::Local { depth, index } = &**callee else {
            return None;
        };
        let frame = self.frames.len().checked_sub(depth + 1)?;
        let var = (self.frames.get(frame)?.key, *index);
        (tail && var == lp.var).then_some(*lp)
    }

    /// Compiles a named `let` as a loop in this function's frame when its function is only
    /// called in tail position of its own body (the expander's shape: a one-slot frame,
    /// the function assigned to it, then called with the inits). Returns false, having
    /// emitted nothing, when the `let` is not such a loop.
    fn inline_loop(&mut self, expr: &ExprRef, dst: u16, tail: bool) -> Result<bool, Value> {
        let Expr::Let {
            inits,
            slots: 1,
            body,
        } = &**expr
        else {
            return Ok(false);
        };
        let Expr::Seq(items) = &**body else {
            return Ok(false);
        };
        let ([define, call], true) = (&items[..], inits.is_empty()) else {
            return Ok(false);
        };
        let (
            Expr::SetLocal {
                depth: 0,
                index: 0,
                value,
            },
            Expr::Call { items: call, .. },
        ) = (&**define, &**call)
        else {
            return Ok(false);
        };
        let (Expr::Lambda(code), Some(Expr::Local { depth: 0, index: 0 })) =
            (&**value, call.first().map(|c| &**c))
        else {
            return Ok(false);
        };
        let args = &call[1..];
        if code.rest
            || args.len() != code.params
            || !only_tail_calls(&code.body, 1, code.params, true)
        {
            return Ok(false);
        }
        // The loop variable's frame (never written: nothing reads it; the inits see it),
        // then the parameters, the inits compiled straight into them.
        let let_key = key_of(expr);
        let outer = self.reserve(1)?;
        self.open_frame(let_key, outer);
        let params = self.reserve(code.slots)?;
        for (i, arg) in args.iter().enumerate() {
            self.expr(arg, params + i as u16, false)?;
        }
        let start = self.here();
        for i in code.params..code.slots {
            self.emit(Op::Nil(params + i as u16));
        }
        let key = key_of(code);
        self.open_frame(key, params);
        self.box_slots(key, params, 0..code.slots);
        self.loops.push(LoopInfo {
            var: (let_key, 0),
            level: self.level(),
            params,
            arity: count(code.params)?,
            start,
            fn_tail: self.function_tail(tail),
            frames: self.frames.len() - 1,
        });
        let result = self.expr(&code.body, dst, true);
        self.loops.pop();
        self.frames.pop();
        self.close_frame(outer);
        result?;
        Ok(true)
    }

    fn lambda(&mut self, code: &Rc<LambdaCode>, dst: u16) -> Compiled {
        let params = count(code.params)?;
        let slots = count(code.slots)?;
        self.fns.push(FnState::new(
            key_of(code),
            code.name,
            params,
            code.rest,
            slots,
        ));
        let key = key_of(code);
        let level = self.level();
        self.frames.push(FrameInfo {
            key,
            level,
            base: 0,
        });
        if let Some(loc) = &code.loc {
            self.state().lines.push((0, loc.pos));
        }
        // A frame's registers may hold a caller's dead temporaries: internal definitions
        // start out nil.
        for i in usize::from(params) + usize::from(code.rest)..code.slots {
            self.emit(Op::Nil(i as u16));
        }
        self.box_slots(key, 0, 0..code.slots);
        let body = self.alloc().and_then(|result| {
            self.expr(&code.body, result, true)?;
            self.emit(Op::Return(result));
            Ok(())
        });
        self.frames.pop();
        let state = self.fns.pop().ok_or_else(|| too_big("functions"))?;
        body?;
        let proto = Rc::new(self.finish(state)?);
        let protos = &mut self.state().protos;
        protos.push(proto);
        let index = u32::try_from(protos.len() - 1).map_err(|_| too_big("functions"))?;
        self.emit(Op::Closure(dst, index));
        Ok(())
    }
}

/// Whether every reference to the variable in slot 0 of the frame `depth` frames up is the
/// function of a call in tail position (`tail`) with `arity` arguments, and none is inside
/// a nested function or an assignment.
fn only_tail_calls(expr: &ExprRef, depth: usize, arity: usize, tail: bool) -> bool {
    let is_var = |e: &ExprRef| matches!(&**e, Expr::Local { depth: d, index: 0 } if *d == depth);
    match &**expr {
        Expr::Const(_) | Expr::Global { .. } => true,
        Expr::Local { .. } => !is_var(expr),
        Expr::Call { items, .. } => match items.split_first() {
            Some((f, args)) if is_var(f) => {
                tail && args.len() == arity
                    && args.iter().all(|a| only_tail_calls(a, depth, arity, false))
            }
            _ => items
                .iter()
                .all(|i| only_tail_calls(i, depth, arity, false)),
        },
        Expr::SetLocal {
            depth: d,
            index,
            value,
        } => !(*d == depth && *index == 0) && only_tail_calls(value, depth, arity, false),
        Expr::SetGlobal { value, .. } | Expr::Define { value, .. } => {
            only_tail_calls(value, depth, arity, false)
        }
        Expr::CallOrElement { call, element, .. } => {
            only_tail_calls(call, depth, arity, tail)
                && only_tail_calls(element, depth, arity, tail)
        }
        Expr::If(c, t, e) => {
            only_tail_calls(c, depth, arity, false)
                && only_tail_calls(t, depth, arity, tail)
                && only_tail_calls(e, depth, arity, tail)
        }
        Expr::Seq(items) | Expr::And(items) | Expr::Or(items) => {
            let last = items.len().saturating_sub(1);
            items
                .iter()
                .enumerate()
                .all(|(i, item)| only_tail_calls(item, depth, arity, tail && i == last))
        }
        Expr::Let { inits, body, .. } => {
            inits
                .iter()
                .all(|i| only_tail_calls(i, depth, arity, false))
                && only_tail_calls(body, depth + 1, arity, tail)
        }
        Expr::Guard { body, handler } => {
            only_tail_calls(body, depth, arity, false)
                && only_tail_calls(handler, depth + 1, arity, tail)
        }
        Expr::Perform { request, .. } => only_tail_calls(request, depth, arity, false),
        Expr::MakeList(items) | Expr::MakeDict(items) | Expr::MakeElement { items, .. } => items
            .iter()
            .all(|i| only_tail_calls(i, depth, arity, false)),
        // A nested function may not mention it at all.
        Expr::Lambda(code)
        | Expr::DefMacro { code, .. }
        | Expr::DefComp { code, .. }
        | Expr::DefTest { code, .. } => only_tail_calls(&code.body, depth + 1, arity, false),
    }
}

/// The `Local` nodes of a tail call that read their variable for the last time: after a
/// tail call the frame is dead, so such a read can take the value. Only reads in the call's
/// own scope are considered; a call containing a new scope (let, guard, lambda) or an
/// assignment gives none.
fn last_reads(items: &[ExprRef]) -> Vec<usize> {
    last_reads_of(items)
        .into_iter()
        .map(|(_, node)| node)
        .collect()
}

/// [`last_reads`] with each read's variable as `(depth, index)` from the call's scope.
fn last_reads_of(items: &[ExprRef]) -> Vec<((usize, usize), usize)> {
    fn walk(e: &ExprRef, reads: &mut Vec<((usize, usize), usize)>) -> bool {
        match &**e {
            Expr::Const(_) | Expr::Global { .. } => true,
            Expr::Local { depth, index } => {
                reads.push(((*depth, *index), key_of(e)));
                true
            }
            Expr::If(c, t, f) => walk(c, reads) && walk(t, reads) && walk(f, reads),
            Expr::Perform { request, .. } => walk(request, reads),
            node => node
                .evaluated_in_order()
                .is_some_and(|items| items.iter().all(|i| walk(i, reads))),
        }
    }
    let mut reads = Vec::new();
    if !items.iter().all(|i| walk(i, &mut reads)) {
        return Vec::new();
    }
    let mut last = Vec::new();
    for (i, (var, node)) in reads.iter().enumerate() {
        if !reads[i + 1..].iter().any(|(other, _)| other == var) {
            last.push((*var, *node));
        }
    }
    last
}

fn count(n: usize) -> Result<u16, Value> {
    u16::try_from(n).map_err(|_| too_big("arguments or items"))
}
