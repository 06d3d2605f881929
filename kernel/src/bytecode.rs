//! Bytecode: the one place that declares the instruction set ([`Op`], [`Prim`]), the
//! compiled function prototype ([`Proto`]) and the disassembler. The `.sxbc` file format that
//! serialises it lives in `sxbc.rs`.
//!
//! The VM is a stack machine. Each frame reserves `slots` local slots above its arguments;
//! operands live above the locals. Jump targets are absolute instruction indices.

use std::fmt::Write;
use std::rc::Rc;

use crate::expander::Global;
use crate::value::{Pos, Symbol, Value};

/// Operations with a fast path in the VM. A `Prim` instruction carries the global it was
/// compiled from: when that global no longer holds the core native, the VM calls whatever
/// it holds instead, so rebinding `+` still works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prim {
    Add,
    Sub,
    Mul,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Mod,
    Not,
    First,
    Rest,
    Cons,
    IsEmpty,
    IsNil,
    Inc,
    Dec,
    Abs,
    Assoc,
}

pub const PRIMS: &[(Prim, &str, u16)] = &[
    (Prim::Add, "+", 2),
    (Prim::Sub, "-", 2),
    (Prim::Mul, "*", 2),
    (Prim::Lt, "<", 2),
    (Prim::Gt, ">", 2),
    (Prim::Le, "<=", 2),
    (Prim::Ge, ">=", 2),
    (Prim::Eq, "=", 2),
    (Prim::Mod, "mod", 2),
    (Prim::Not, "not", 1),
    (Prim::First, "first", 1),
    (Prim::Rest, "rest", 1),
    (Prim::Cons, "cons", 2),
    (Prim::IsEmpty, "empty?", 1),
    (Prim::IsNil, "nil?", 1),
    (Prim::Inc, "inc", 1),
    (Prim::Dec, "dec", 1),
    (Prim::Abs, "abs", 1),
    (Prim::Assoc, "assoc", 3),
];

impl Prim {
    pub fn from_code(code: u8) -> Option<Prim> {
        PRIMS.get(code as usize).map(|p| p.0)
    }
    /// The index in [`PRIMS`] (the declaration order).
    #[inline]
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn name(self) -> &'static str {
        PRIMS[self.code() as usize].1
    }
    #[inline]
    pub fn arity(self) -> u16 {
        PRIMS[self as usize].2
    }
    pub fn lookup(name: &str, argc: usize) -> Option<Prim> {
        PRIMS
            .iter()
            .find(|p| p.1 == name && p.2 as usize == argc)
            .map(|p| p.0)
    }
}

/// One instruction. `u16` operands index slots, captures and the proto's global table;
/// `u32` operands index constants, child prototypes and code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Const(u32),
    Nil,
    True,
    False,
    Int(i32),
    Local(u16),
    SetLocal(u16),
    /// Load through the box held in a slot.
    LocalBoxed(u16),
    SetLocalBoxed(u16),
    /// Replace the slot's value with a box holding it.
    MakeBox(u16),
    Capture(u16),
    CaptureBoxed(u16),
    SetCaptureBoxed(u16),
    Global(u16),
    /// `set!` of a global: raises `unbound-variable` when unbound.
    SetGlobal(u16),
    DefineGlobal(u16),
    Pop,
    Jump(u32),
    JumpIfFalse(u32),
    /// `and`: when the top is falsy, keep it and jump; else pop it.
    JumpIfFalseKeep(u32),
    /// `or`: when the top is truthy, keep it and jump; else pop it.
    JumpIfTrueKeep(u32),
    /// Jump when the global is unbound (a tag head deciding between call and element).
    JumpIfUnbound(u16, u32),
    Call(u16),
    TailCall(u16),
    Return,
    Closure(u32),
    List(u16),
    Dict(u16),
    /// Constant index of the tag symbol, then the number of items.
    Element(u32, u16),
    /// Install a handler at the given code index for the guard body that follows.
    PushGuard(u32),
    PopGuard,
    Perform,
    DefMacro(u16),
    /// Global, then the constant index of the list of key symbols.
    DefComp(u16, u32),
    /// Constant index of the test name.
    DefTest(u32),
    Prim(Prim, u16),
    /// `(prim local int)`: a local and a small integer, without pushing them.
    PrimLocalInt(Prim, u16, i32),
    /// `(prim local local)`.
    PrimLocals(Prim, u16, u16),
    /// Push a local and leave nil in its slot: its last use before a tail call, so the value
    /// can be updated in place (`assoc` on a dict nothing else holds).
    MoveLocal(u16),
    /// The running closure itself: how a named `let` loop or a local recursive function
    /// refers to itself without capturing (and boxing) the variable that holds it.
    SelfClosure,
}

/// The names and operand shapes of every opcode, in encoding order. `.sxbc` files carry a
/// hash of this table: any change to the instruction set makes old files stale.
pub const OPCODES: &[(&str, &str)] = &[
    ("const", "u32"),
    ("nil", ""),
    ("true", ""),
    ("false", ""),
    ("int", "i32"),
    ("local", "u16"),
    ("set-local", "u16"),
    ("local-boxed", "u16"),
    ("set-local-boxed", "u16"),
    ("make-box", "u16"),
    ("capture", "u16"),
    ("capture-boxed", "u16"),
    ("set-capture-boxed", "u16"),
    ("global", "u16"),
    ("set-global", "u16"),
    ("define-global", "u16"),
    ("pop", ""),
    ("jump", "u32"),
    ("jump-if-false", "u32"),
    ("jump-if-false-keep", "u32"),
    ("jump-if-true-keep", "u32"),
    ("jump-if-unbound", "u16 u32"),
    ("call", "u16"),
    ("tail-call", "u16"),
    ("return", ""),
    ("closure", "u32"),
    ("list", "u16"),
    ("dict", "u16"),
    ("element", "u32 u16"),
    ("push-guard", "u32"),
    ("pop-guard", ""),
    ("perform", ""),
    ("def-macro", "u16"),
    ("def-comp", "u16 u32"),
    ("def-test", "u32"),
    ("prim", "u8 u16"),
    ("prim-local-int", "u8 u16 i32"),
    ("prim-locals", "u8 u16 u16"),
    ("self-closure", ""),
    ("move-local", "u16"),
];

impl Op {
    /// The opcode number (index into [`OPCODES`]).
    pub fn code(&self) -> u8 {
        match self {
            Op::Const(_) => 0,
            Op::Nil => 1,
            Op::True => 2,
            Op::False => 3,
            Op::Int(_) => 4,
            Op::Local(_) => 5,
            Op::SetLocal(_) => 6,
            Op::LocalBoxed(_) => 7,
            Op::SetLocalBoxed(_) => 8,
            Op::MakeBox(_) => 9,
            Op::Capture(_) => 10,
            Op::CaptureBoxed(_) => 11,
            Op::SetCaptureBoxed(_) => 12,
            Op::Global(_) => 13,
            Op::SetGlobal(_) => 14,
            Op::DefineGlobal(_) => 15,
            Op::Pop => 16,
            Op::Jump(_) => 17,
            Op::JumpIfFalse(_) => 18,
            Op::JumpIfFalseKeep(_) => 19,
            Op::JumpIfTrueKeep(_) => 20,
            Op::JumpIfUnbound(..) => 21,
            Op::Call(_) => 22,
            Op::TailCall(_) => 23,
            Op::Return => 24,
            Op::Closure(_) => 25,
            Op::List(_) => 26,
            Op::Dict(_) => 27,
            Op::Element(..) => 28,
            Op::PushGuard(_) => 29,
            Op::PopGuard => 30,
            Op::Perform => 31,
            Op::DefMacro(_) => 32,
            Op::DefComp(..) => 33,
            Op::DefTest(_) => 34,
            Op::Prim(..) => 35,
            Op::PrimLocalInt(..) => 36,
            Op::PrimLocals(..) => 37,
            Op::SelfClosure => 38,
            Op::MoveLocal(_) => 39,
        }
    }
}

/// FNV-1a over the opcode table and the primitive table.
pub fn opcode_table_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, shape) in OPCODES {
        feed(name.as_bytes());
        feed(b"(");
        feed(shape.as_bytes());
        feed(b")");
    }
    for (_, name, arity) in PRIMS {
        feed(name.as_bytes());
        feed(&arity.to_le_bytes());
    }
    h
}

/// Where a closure's captured value comes from, in the frame that creates the closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFrom {
    Local(u16),
    Capture(u16),
}

/// A compiled function.
pub struct Proto {
    pub name: Option<Symbol>,
    pub params: u16,
    pub rest: bool,
    /// Local slots, parameters included.
    pub slots: u16,
    pub captures: Vec<CaptureFrom>,
    pub code: Vec<Op>,
    pub consts: Vec<Value>,
    pub globals: Vec<Rc<Global>>,
    pub protos: Vec<Rc<Proto>>,
    /// For each primitive (by code), the index of its global, or `u16::MAX`: the fused
    /// `PrimLocal*` instructions find their global here.
    pub prim_globals: Vec<u16>,
    /// `(instruction index, position)`, sorted by index: the source of the instructions from
    /// that index on.
    pub lines: Vec<(u32, Pos)>,
    pub file: Option<Rc<str>>,
}

impl Proto {
    pub fn pos_at(&self, ip: usize) -> Option<Pos> {
        let i = self.lines.partition_point(|(at, _)| (*at as usize) <= ip);
        i.checked_sub(1).map(|i| self.lines[i].1)
    }

    pub fn display_name(&self) -> &'static str {
        self.name.map_or("fn", |n| n.name())
    }
}

/// A readable listing of a prototype and its children.
pub fn disassemble(proto: &Proto) -> String {
    let mut out = String::new();
    disassemble_into(&mut out, proto, "");
    out
}

fn disassemble_into(out: &mut String, proto: &Proto, path: &str) {
    let _ = writeln!(
        out,
        "fn {}{} params={}{} slots={} captures={:?}",
        path,
        proto.display_name(),
        proto.params,
        if proto.rest { "+rest" } else { "" },
        proto.slots,
        proto.captures
    );
    for (i, c) in proto.consts.iter().enumerate() {
        let _ = writeln!(out, "  const {i}: {}", crate::printer::repr(c));
    }
    for (i, g) in proto.globals.iter().enumerate() {
        let _ = writeln!(out, "  global {i}: {}", g.name.name());
    }
    for (ip, op) in proto.code.iter().enumerate() {
        let pos = proto
            .lines
            .iter()
            .find(|(at, _)| *at as usize == ip)
            .map(|(_, p)| format!("  ; {p}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {ip:5}  {}{pos}", describe_op(op, proto));
    }
    for (i, child) in proto.protos.iter().enumerate() {
        out.push('\n');
        disassemble_into(out, child, &format!("{path}{}/{i}/", proto.display_name()));
    }
}

fn describe_op(op: &Op, proto: &Proto) -> String {
    let global = |g: &u16| {
        proto
            .globals
            .get(*g as usize)
            .map_or("?", |g| g.name.name())
    };
    let constant = |c: &u32| {
        proto
            .consts
            .get(*c as usize)
            .map_or_else(|| "?".into(), crate::printer::repr)
    };
    let name = OPCODES[op.code() as usize].0;
    match op {
        Op::Const(c) => format!("{name} {}", constant(c)),
        Op::Int(n) => format!("{name} {n}"),
        Op::Global(g) | Op::SetGlobal(g) | Op::DefineGlobal(g) | Op::DefMacro(g) => {
            format!("{name} {}", global(g))
        }
        Op::JumpIfUnbound(g, t) => format!("{name} {} -> {t}", global(g)),
        Op::DefComp(g, c) => format!("{name} {} {}", global(g), constant(c)),
        Op::Element(c, n) => format!("{name} {} {n}", constant(c)),
        Op::DefTest(c) => format!("{name} {}", constant(c)),
        Op::Prim(p, g) => format!("{name} {} ({})", p.name(), global(g)),
        Op::PrimLocalInt(p, a, k) => format!("{name} {} local {a}, {k}", p.name()),
        Op::PrimLocals(p, a, b) => format!("{name} {} local {a}, local {b}", p.name()),
        Op::Local(n)
        | Op::MoveLocal(n)
        | Op::SetLocal(n)
        | Op::LocalBoxed(n)
        | Op::SetLocalBoxed(n)
        | Op::MakeBox(n)
        | Op::Capture(n)
        | Op::CaptureBoxed(n)
        | Op::SetCaptureBoxed(n)
        | Op::Call(n)
        | Op::TailCall(n)
        | Op::List(n)
        | Op::Dict(n) => format!("{name} {n}"),
        Op::Jump(t)
        | Op::JumpIfFalse(t)
        | Op::JumpIfFalseKeep(t)
        | Op::JumpIfTrueKeep(t)
        | Op::PushGuard(t)
        | Op::Closure(t) => format!("{name} {t}"),
        Op::Nil
        | Op::True
        | Op::False
        | Op::Pop
        | Op::Return
        | Op::PopGuard
        | Op::Perform
        | Op::SelfClosure => name.to_string(),
    }
}

/// One instruction of every kind, with operands that fit the test prototype in
/// `sxbc::tests` (one slot, one capture, one global, four constants, one child).
#[cfg(test)]
pub(crate) fn one_of_each() -> Vec<Op> {
    vec![
        Op::Const(0),
        Op::Nil,
        Op::True,
        Op::False,
        Op::Int(-5),
        Op::Local(0),
        Op::SetLocal(0),
        Op::LocalBoxed(0),
        Op::SetLocalBoxed(0),
        Op::MakeBox(0),
        Op::Capture(0),
        Op::CaptureBoxed(0),
        Op::SetCaptureBoxed(0),
        Op::Global(0),
        Op::SetGlobal(0),
        Op::DefineGlobal(0),
        Op::Pop,
        Op::Jump(1),
        Op::JumpIfFalse(1),
        Op::JumpIfFalseKeep(1),
        Op::JumpIfTrueKeep(1),
        Op::JumpIfUnbound(0, 1),
        Op::Call(1),
        Op::TailCall(1),
        Op::Closure(0),
        Op::List(2),
        Op::Dict(2),
        Op::Element(1, 2),
        Op::PushGuard(1),
        Op::PopGuard,
        Op::Perform,
        Op::DefMacro(0),
        Op::DefComp(0, 2),
        Op::DefTest(3),
        Op::Prim(Prim::Add, 0),
        Op::PrimLocalInt(Prim::Lt, 0, -7),
        Op::PrimLocals(Prim::Mul, 0, 0),
        Op::SelfClosure,
        Op::MoveLocal(0),
        Op::Return,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prim_codes_and_arities_match_the_table() {
        for (i, (prim, _, arity)) in PRIMS.iter().enumerate() {
            assert_eq!(prim.code() as usize, i);
            assert_eq!(prim.arity(), *arity);
            assert_eq!(Prim::from_code(i as u8), Some(*prim));
        }
    }

    #[test]
    fn opcode_numbers_match_the_table() {
        let samples = one_of_each();
        assert_eq!(samples.len(), OPCODES.len());
        let mut codes: Vec<u8> = samples.iter().map(Op::code).collect();
        codes.sort();
        assert_eq!(codes, (0..OPCODES.len() as u8).collect::<Vec<_>>());
        assert!(std::mem::size_of::<Op>() <= 8);
    }
}
