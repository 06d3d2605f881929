//! Bytecode: the one place that declares the instruction set ([`Op`], [`Prim`]) — one table
//! (`instruction_set!`) from which the enum, opcode numbers, encoding, decoding, the loader's
//! checks and the listing all follow —, the compiled function prototype ([`Proto`]) and the
//! disassembler. The `.sxbc` file container (header, constants, prototypes) is `sxbc.rs`.
//!
//! The VM is a register machine (the Lua 5 design): each frame is a window of `slots`
//! registers on one value stack — parameters first, then `let` locals and temporaries as the
//! compiler allocates them — and instructions name their operand and result registers. A
//! call's function and arguments sit in consecutive registers, which become the callee's
//! frame. Jump targets are absolute instruction indices.

use std::fmt::Write;
use std::rc::Rc;

use crate::expander::Global;
use crate::value::{Pos, Symbol, Value};

/// Declares the primitives once: the enum, and `PRIMS` (name and arity, in code order).
macro_rules! primitives {
    ($( $variant:ident $name:literal $arity:literal; )*) => {
        /// Operations with a fast path in the VM. A `Prim` instruction carries the global it
        /// was compiled from: when that global no longer holds the core native, the VM calls
        /// whatever it holds instead, so rebinding `+` still works.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Prim { $( $variant, )* }

        pub const PRIMS: &[(Prim, &str, u16)] = &[ $( (Prim::$variant, $name, $arity), )* ];
    };
}

primitives! {
    Add "+" 2;
    Sub "-" 2;
    Mul "*" 2;
    Lt "<" 2;
    Gt ">" 2;
    Le "<=" 2;
    Ge ">=" 2;
    Eq "=" 2;
    Mod "mod" 2;
    Not "not" 1;
    First "first" 1;
    Rest "rest" 1;
    Cons "cons" 2;
    IsEmpty "empty?" 1;
    IsNil "nil?" 1;
    Inc "inc" 1;
    Dec "dec" 1;
    Abs "abs" 1;
    Assoc "assoc" 3;
}

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

/// Declares the instruction set once. Each entry is a variant, its name in listings, and its
/// operands as `kind name`; the kind says how the operand is encoded, what it must point at
/// for the loader to accept it, and how the disassembler shows it (see `operand!`). From
/// this one table follow the [`Op`] enum, the opcode numbers (declaration order),
/// [`OPCODES`] (whose hash stamps `.sxbc` files, so any change makes old files stale),
/// encoding, decoding, validation and the listing.
macro_rules! instruction_set {
    ($( $(#[doc = $doc:literal])* $variant:ident $name:literal $( ( $($kind:ident $field:ident),+ ) )? ;)*) => {
        /// One instruction. See the `instruction_set!` table for its operands.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Op {
            $( $(#[doc = $doc])* $variant $( ( $( operand!(type $kind) ),+ ) )?, )*
        }

        /// The opcode numbers, in declaration order.
        #[repr(u8)]
        enum Code { $( $variant, )* }

        /// The name and operand kinds of every opcode, in encoding order.
        pub const OPCODES: &[(&str, &str)] = &[ $( ($name, stringify!($( $($kind)+ )?)), )* ];

        /// The byte width of each opcode's operands, in order (hashed with [`OPCODES`], so a
        /// wider operand also makes old files stale).
        const OPERAND_WIDTHS: &[&[usize]] = &[
            $( &[ $( $( std::mem::size_of::<operand!(type $kind)>() ),+ )? ], )*
        ];

        impl Op {
            /// The opcode number (index into [`OPCODES`]).
            #[inline]
            pub fn code(&self) -> u8 {
                match self { $( Op::$variant { .. } => Code::$variant as u8, )* }
            }

            pub fn name(&self) -> &'static str {
                OPCODES[self.code() as usize].0
            }

            /// Appends the encoded instruction: its opcode, then its operands little-endian.
            pub fn encode(&self, out: &mut Vec<u8>) {
                out.push(self.code());
                match *self {
                    $( Op::$variant $( ( $($field),+ ) )? => { $( $( operand!(encode $kind, out, $field); )+ )? } )*
                }
            }

            /// Decodes one instruction at `*at`, moving past it.
            pub fn decode(bytes: &[u8], at: &mut usize) -> Result<Op, String> {
                let start = *at;
                let code = take::<1>(bytes, at)?[0];
                $(
                    if code == Code::$variant as u8 {
                        return Ok(Op::$variant $( ( $( operand!(decode $kind, bytes, at, start) ),+ ) )?);
                    }
                )*
                Err(format!("unknown opcode {code} at byte {start} (this kernel has {})", OPCODES.len()))
            }

            /// Whether every operand points at something of its kind in `proto`.
            pub fn valid_in(&self, proto: &ProtoParts) -> bool {
                let operands = match *self {
                    $( Op::$variant $( ( $($field),+ ) )? => true $( $( && operand!(check $kind, proto, $field) )+ )?, )*
                };
                operands && self.spans_fit(proto)
            }

            /// The instruction as the disassembler shows it.
            pub fn describe(&self, proto: &Proto) -> String {
                #[allow(unused_mut)]
                let mut text = self.name().to_string();
                match *self {
                    $( Op::$variant $( ( $($field),+ ) )? => {
                        $( $( text.push(' '); text.push_str(&operand!(show $kind, proto, $field)); )+ )?
                    } )*
                }
                text
            }
        }

        /// One instruction of every kind, with operands that fit the test prototype in
        /// `sxbc::tests` (two registers, one capture, one global, the constants `1`, `div`,
        /// `(title)` and `"a test"`, one child).
        #[cfg(test)]
        pub(crate) fn one_of_each() -> Vec<Op> {
            vec![ $( Op::$variant $( ( $( operand!(sample $kind) ),+ ) )?, )* ]
        }
    };
}

/// What each operand kind means: its Rust type, encoding, decoding, the loader's check, the
/// listing, and a sample for the round-trip test.
macro_rules! operand {
    // Registers, captures and globals of the running function; counts of operands.
    (type reg) => { u16 }; (type capture) => { u16 }; (type global) => { u16 }; (type count) => { u16 };
    // Constants (any, a tag symbol, a list of key symbols, a test name), jump targets, children.
    (type konst) => { u32 }; (type tag) => { u32 }; (type keys) => { u32 }; (type label) => { u32 };
    (type target) => { u32 }; (type child) => { u32 };
    (type int) => { i32 };
    // A primitive; `binprim` must be binary.
    (type prim) => { Prim }; (type binprim) => { Prim };

    (encode int, $out:ident, $v:ident) => { $out.extend_from_slice(&$v.to_le_bytes()) };
    (encode prim, $out:ident, $v:ident) => { $out.push($v.code()) };
    (encode binprim, $out:ident, $v:ident) => { $out.push($v.code()) };
    (encode $kind:ident, $out:ident, $v:ident) => { $out.extend_from_slice(&$v.to_le_bytes()) };

    (decode int, $b:ident, $at:ident, $start:ident) => { i32::from_le_bytes(take::<4>($b, $at)?) };
    (decode prim, $b:ident, $at:ident, $start:ident) => { decode_prim($b, $at, $start)? };
    (decode binprim, $b:ident, $at:ident, $start:ident) => { decode_prim($b, $at, $start)? };
    (decode $kind:ident, $b:ident, $at:ident, $start:ident) => {
        <operand!(type $kind)>::from_le_bytes(take($b, $at)?)
    };

    (check reg, $p:ident, $v:ident) => { $v < $p.slots };
    (check capture, $p:ident, $v:ident) => { usize::from($v) < $p.captures.len() };
    (check global, $p:ident, $v:ident) => { usize::from($v) < $p.globals.len() };
    (check konst, $p:ident, $v:ident) => { ($v as usize) < $p.consts.len() };
    (check tag, $p:ident, $v:ident) => { matches!($p.consts.get($v as usize), Some(Value::Symbol(_))) };
    (check keys, $p:ident, $v:ident) => {
        matches!($p.consts.get($v as usize), Some(Value::List(keys)) if keys.iter().all(|k| matches!(k, Value::Symbol(_))))
    };
    (check label, $p:ident, $v:ident) => { matches!($p.consts.get($v as usize), Some(Value::Str(_))) };
    (check target, $p:ident, $v:ident) => { ($v as usize) < $p.code.len() };
    (check child, $p:ident, $v:ident) => { ($v as usize) < $p.protos.len() };
    (check binprim, $p:ident, $v:ident) => { $v.arity() == 2 };
    (check $kind:ident, $p:ident, $v:ident) => {{ let _ = $v; true }};

    (show reg, $p:ident, $v:ident) => { format!("r{}", $v) };
    (show capture, $p:ident, $v:ident) => { format!("capture {}", $v) };
    (show global, $p:ident, $v:ident) => {
        $p.globals.get($v as usize).map_or_else(|| format!("global? {}", $v), |g| g.name.name().to_string())
    };
    (show target, $p:ident, $v:ident) => { format!("-> {}", $v) };
    (show child, $p:ident, $v:ident) => { format!("fn {}", $v) };
    (show prim, $p:ident, $v:ident) => { $v.name().to_string() };
    (show binprim, $p:ident, $v:ident) => { $v.name().to_string() };
    (show int, $p:ident, $v:ident) => { $v.to_string() };
    (show count, $p:ident, $v:ident) => { $v.to_string() };
    (show $kind:ident, $p:ident, $v:ident) => {
        $p.consts.get($v as usize).map_or_else(|| format!("const? {}", $v), crate::printer::repr)
    };

    (sample reg) => { 0 }; (sample capture) => { 0 }; (sample global) => { 0 };
    (sample count) => { 1 }; (sample konst) => { 0 }; (sample tag) => { 1 };
    (sample keys) => { 2 }; (sample label) => { 3 }; (sample target) => { 1 };
    (sample child) => { 0 }; (sample int) => { -5 };
    (sample prim) => { Prim::Add }; (sample binprim) => { Prim::Lt };
}

fn take<const N: usize>(bytes: &[u8], at: &mut usize) -> Result<[u8; N], String> {
    let slice = at
        .checked_add(N)
        .and_then(|end| bytes.get(*at..end))
        .ok_or_else(|| format!("truncated at byte {}", bytes.len()))?;
    *at += N;
    let mut out = [0; N];
    out.copy_from_slice(slice);
    Ok(out)
}

fn decode_prim(bytes: &[u8], at: &mut usize, start: usize) -> Result<Prim, String> {
    let [p] = take::<1>(bytes, at)?;
    Prim::from_code(p).ok_or_else(|| format!("unknown primitive {p} at byte {start}"))
}

instruction_set! {
    Const "const" (reg dst, konst c);
    Nil "nil" (reg dst);
    True "true" (reg dst);
    False "false" (reg dst);
    Int "int" (reg dst, int n);
    /// Copy a register.
    Move "move" (reg dst, reg src);
    /// Move a register's value, leaving nil: a temporary's value, or a local's last read
    /// before a tail call, so the value can be updated in place (`assoc` on a dict nothing
    /// else holds).
    Take "take" (reg dst, reg src);
    /// Load through the box held in a register.
    LocalBoxed "local-boxed" (reg dst, reg src);
    /// Store into the box held in `slot`.
    SetLocalBoxed "set-local-boxed" (reg slot, reg src);
    /// Replace the register's value with a box holding it.
    MakeBox "make-box" (reg slot);
    Capture "capture" (reg dst, capture i);
    CaptureBoxed "capture-boxed" (reg dst, capture i);
    SetCaptureBoxed "set-capture-boxed" (capture i, reg src);
    Global "global" (reg dst, global g);
    /// `set!` of a global: raises `unbound-variable` when unbound.
    SetGlobal "set-global" (global g, reg src);
    DefineGlobal "define-global" (global g, reg src);
    Jump "jump" (target t);
    JumpIfFalse "jump-if-false" (reg r, target t);
    JumpIfTrue "jump-if-true" (reg r, target t);
    /// Jump when the global is unbound (a tag head deciding between call and element).
    JumpIfUnbound "jump-if-unbound" (global g, target t);
    /// Call the function in `r` with the `n` registers after it; the result lands in `r`.
    Call "call" (reg r, count n);
    TailCall "tail-call" (reg r, count n);
    /// `call` of the function a global holds (loaded into `r` first).
    CallGlobal "call-global" (global g, reg r, count n);
    /// `tail-call` of the function a global holds: when that is the running closure itself,
    /// a loop.
    TailCallGlobal "tail-call-global" (global g, reg r, count n);
    Return "return" (reg r);
    Closure "closure" (reg dst, child i);
    /// The running closure itself: how a named `let` loop or a local recursive function
    /// refers to itself without capturing (and boxing) the variable that holds it.
    SelfClosure "self-closure" (reg dst);
    /// The `n` registers from `from` (taken) as a list.
    List "list" (reg dst, reg from, count n);
    Dict "dict" (reg dst, reg from, count n);
    /// The tag symbol, then the items.
    Element "element" (reg dst, tag c, reg from, count n);
    /// Install a handler at `t` for the guard body that follows; a raise lands in `r`.
    PushGuard "push-guard" (reg r, target t);
    PopGuard "pop-guard";
    /// Perform the request in `src`; the host's answer lands in `dst`.
    Perform "perform" (reg dst, reg src);
    DefMacro "def-macro" (global g, reg src);
    /// The global, then the list of key symbols.
    DefComp "def-comp" (global g, keys c, reg src);
    DefTest "def-test" (label c, reg src);
    /// A primitive (see [`Prim`]) on the registers from `a` (as many as it takes; temporaries
    /// at or above `dst` are taken), compiled from global `g`.
    Prim "prim" (prim p, reg dst, reg a, global g);
    /// A binary primitive on any two registers.
    Prim2 "prim2" (binprim p, reg dst, reg a, reg b, global g);
    /// A binary primitive on a register and a small integer.
    PrimInt "prim-int" (binprim p, reg dst, reg a, int k, global g);
    /// The integer primitives have instructions of their own (one dispatch, not a second on
    /// the primitive): `add` is `prim2 +`, `add-int` is `prim-int +`, and so on
    /// ([`Op::binary`] chooses).
    Add "add" (reg dst, reg a, reg b, global g);
    Sub "sub" (reg dst, reg a, reg b, global g);
    Mul "mul" (reg dst, reg a, reg b, global g);
    Mod "mod" (reg dst, reg a, reg b, global g);
    Lt "lt" (reg dst, reg a, reg b, global g);
    Gt "gt" (reg dst, reg a, reg b, global g);
    Le "le" (reg dst, reg a, reg b, global g);
    Ge "ge" (reg dst, reg a, reg b, global g);
    Eq "eq" (reg dst, reg a, reg b, global g);
    AddInt "add-int" (reg dst, reg a, int k, global g);
    SubInt "sub-int" (reg dst, reg a, int k, global g);
    MulInt "mul-int" (reg dst, reg a, int k, global g);
    ModInt "mod-int" (reg dst, reg a, int k, global g);
    LtInt "lt-int" (reg dst, reg a, int k, global g);
    GtInt "gt-int" (reg dst, reg a, int k, global g);
    LeInt "le-int" (reg dst, reg a, int k, global g);
    GeInt "ge-int" (reg dst, reg a, int k, global g);
    EqInt "eq-int" (reg dst, reg a, int k, global g);
    /// Likewise the one-operand primitives with a fast path ([`Op::unary`] chooses).
    Not "not" (reg dst, reg a, global g);
    IsNil "nil?" (reg dst, reg a, global g);
    IsEmpty "empty?" (reg dst, reg a, global g);
    First "first" (reg dst, reg a, global g);
    Rest "rest" (reg dst, reg a, global g);
    Inc "inc" (reg dst, reg a, global g);
    Dec "dec" (reg dst, reg a, global g);
}

/// The second operand of a binary primitive: a register or a small integer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    Reg(u16),
    Int(i32),
}

impl Op {
    /// The instruction for binary primitive `p` on register `a` and `b`, result in `dst`,
    /// compiled from global `g`: the primitive's own instruction when it has one.
    pub fn binary(p: Prim, dst: u16, a: u16, b: Operand, g: u16) -> Op {
        use Operand::{Int, Reg};
        match (p, b) {
            (Prim::Add, Reg(b)) => Op::Add(dst, a, b, g),
            (Prim::Sub, Reg(b)) => Op::Sub(dst, a, b, g),
            (Prim::Mul, Reg(b)) => Op::Mul(dst, a, b, g),
            (Prim::Mod, Reg(b)) => Op::Mod(dst, a, b, g),
            (Prim::Lt, Reg(b)) => Op::Lt(dst, a, b, g),
            (Prim::Gt, Reg(b)) => Op::Gt(dst, a, b, g),
            (Prim::Le, Reg(b)) => Op::Le(dst, a, b, g),
            (Prim::Ge, Reg(b)) => Op::Ge(dst, a, b, g),
            (Prim::Eq, Reg(b)) => Op::Eq(dst, a, b, g),
            (Prim::Add, Int(k)) => Op::AddInt(dst, a, k, g),
            (Prim::Sub, Int(k)) => Op::SubInt(dst, a, k, g),
            (Prim::Mul, Int(k)) => Op::MulInt(dst, a, k, g),
            (Prim::Mod, Int(k)) => Op::ModInt(dst, a, k, g),
            (Prim::Lt, Int(k)) => Op::LtInt(dst, a, k, g),
            (Prim::Gt, Int(k)) => Op::GtInt(dst, a, k, g),
            (Prim::Le, Int(k)) => Op::LeInt(dst, a, k, g),
            (Prim::Ge, Int(k)) => Op::GeInt(dst, a, k, g),
            (Prim::Eq, Int(k)) => Op::EqInt(dst, a, k, g),
            (p, Reg(b)) => Op::Prim2(p, dst, a, b, g),
            (p, Int(k)) => Op::PrimInt(p, dst, a, k, g),
        }
    }

    /// The instruction for one-operand primitive `p` on register `a`: its own instruction
    /// when it has one.
    pub fn unary(p: Prim, dst: u16, a: u16, g: u16) -> Op {
        match p {
            Prim::Not => Op::Not(dst, a, g),
            Prim::IsNil => Op::IsNil(dst, a, g),
            Prim::IsEmpty => Op::IsEmpty(dst, a, g),
            Prim::First => Op::First(dst, a, g),
            Prim::Rest => Op::Rest(dst, a, g),
            Prim::Inc => Op::Inc(dst, a, g),
            Prim::Dec => Op::Dec(dst, a, g),
            p => Op::Prim(p, dst, a, g),
        }
    }
}

impl Op {
    /// The register spans an instruction reads or writes beyond its single registers (call
    /// arguments, list items, a primitive's operands) fit in the frame.
    fn spans_fit(&self, proto: &ProtoParts) -> bool {
        let fits = |from: u16, n: usize| usize::from(from) + n <= usize::from(proto.slots);
        match *self {
            Op::Call(r, n)
            | Op::TailCall(r, n)
            | Op::CallGlobal(_, r, n)
            | Op::TailCallGlobal(_, r, n) => fits(r, usize::from(n) + 1),
            Op::List(_, from, n) | Op::Dict(_, from, n) | Op::Element(_, _, from, n) => {
                fits(from, usize::from(n))
            }
            Op::Prim(p, _, a, _) => fits(a, usize::from(p.arity())),
            _ => true,
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
    for ((name, shape), widths) in OPCODES.iter().zip(OPERAND_WIDTHS) {
        feed(name.as_bytes());
        feed(b"(");
        feed(shape.as_bytes());
        for width in *widths {
            feed(&[*width as u8]);
        }
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

/// The parts of a compiled function, as the compiler or the `.sxbc` loader assembles them;
/// [`Proto::new`] checks them and makes a [`Proto`].
pub struct ProtoParts {
    pub name: Option<Symbol>,
    pub params: u16,
    pub rest: bool,
    /// Registers in a frame: parameters, locals and temporaries.
    pub slots: u16,
    pub captures: Vec<CaptureFrom>,
    pub code: Vec<Op>,
    pub consts: Vec<Value>,
    pub globals: Vec<Rc<Global>>,
    pub protos: Vec<Rc<Proto>>,
    /// `(instruction index, position)`, sorted by index: the source of the instructions from
    /// that index on.
    pub lines: Vec<(u32, Pos)>,
    pub file: Option<Rc<str>>,
}

/// A compiled function, valid by construction: the only way to make one is [`Proto::new`],
/// and its parts are read-only (through `Deref`). The VM relies on what `new` checks — every
/// register operand (and register span) below `slots`, every constant, global, child and
/// jump target in range, the code ending with `return` — to read registers, globals and
/// the next instruction without bounds checks.
pub struct Proto {
    parts: ProtoParts,
}

impl std::ops::Deref for Proto {
    type Target = ProtoParts;
    #[inline(always)]
    fn deref(&self) -> &ProtoParts {
        &self.parts
    }
}

impl Proto {
    /// Checks every index in every instruction against the function it sits in; the error
    /// says which function and instruction is out of range.
    pub fn new(parts: ProtoParts) -> Result<Proto, String> {
        let p = &parts;
        let who = p.name.map_or("fn", |n| n.name());
        if usize::from(p.params) + usize::from(p.rest) > usize::from(p.slots) {
            return Err(format!(
                "{who}: {} parameters but {} slots",
                p.params, p.slots
            ));
        }
        if !p.lines.windows(2).all(|w| w[0].0 <= w[1].0) {
            return Err(format!("{who}: line table out of order"));
        }
        for child in &p.protos {
            for c in &child.captures {
                let ok = match c {
                    CaptureFrom::Local(s) => *s < p.slots,
                    CaptureFrom::Capture(i) => usize::from(*i) < p.captures.len(),
                };
                if !ok {
                    return Err(format!(
                        "{}: capture {c:?} out of range in {who}",
                        child.display_name()
                    ));
                }
            }
        }
        for (ip, op) in p.code.iter().enumerate() {
            if !op.valid_in(p) {
                // (Named, not `{:?}`-printed: `Op`'s Debug would weigh in the browser's module.)
                return Err(format!(
                    "{who}: instruction {ip} ({}) refers outside its function",
                    op.name()
                ));
            }
        }
        // The last instruction leaves the frame, so running code never passes the end.
        if !matches!(p.code.last(), Some(Op::Return(_))) {
            return Err(format!("{who}: code does not end with return"));
        }
        Ok(Proto { parts })
    }

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
        let _ = writeln!(out, "  {ip:5}  {}{pos}", op.describe(proto));
    }
    for (i, child) in proto.protos.iter().enumerate() {
        out.push('\n');
        disassemble_into(out, child, &format!("{path}{}/{i}/", proto.display_name()));
    }
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

    /// A valid two-register function with one global and one constant.
    fn parts(code: Vec<Op>) -> ProtoParts {
        let mut globals = crate::expander::Globals::new();
        let g = crate::expander::global_cell(&mut globals, Symbol::new("g"));
        ProtoParts {
            name: Some(Symbol::new("f")),
            params: 1,
            rest: false,
            slots: 2,
            captures: vec![],
            code,
            consts: vec![Value::Int(1)],
            globals: vec![g],
            protos: vec![],
            lines: vec![],
            file: None,
        }
    }

    /// What the VM reads unchecked (registers, register spans, globals, the next
    /// instruction) can only exist in range: `Proto::new` refuses anything else.
    #[test]
    fn proto_new_refuses_what_the_vm_could_not_run() {
        let ok = vec![
            Op::Global(1, 0),
            Op::JumpIfFalse(0, 3),
            Op::Call(0, 1),
            Op::Return(1),
        ];
        assert!(Proto::new(parts(ok)).is_ok());
        // Each refers outside the function (two registers, one global, one constant).
        let out_of_range: &[(&str, Op)] = &[
            ("register", Op::Move(2, 0)),
            ("call span", Op::Call(0, 2)),
            ("prim span", Op::Prim(Prim::Assoc, 0, 0, 0)),
            ("global", Op::Global(0, 1)),
            ("jump", Op::Jump(2)),
            ("guard", Op::PushGuard(0, 9)),
            ("constant", Op::Const(0, 1)),
        ];
        let mut cases: Vec<(&str, Vec<Op>, &str)> = out_of_range
            .iter()
            .map(|(what, op)| (*what, vec![*op, Op::Return(0)], "instruction 0"))
            .collect();
        cases.push((
            "no return",
            vec![Op::Return(0), Op::Jump(0)],
            "does not end with return",
        ));
        cases.push(("empty", vec![], "does not end with return"));
        for (what, code, expected) in cases {
            match Proto::new(parts(code)) {
                Ok(_) => panic!("{what}: accepted"),
                Err(why) => assert!(why.contains(expected), "{what}: {why}"),
            }
        }
        let mut too_many_params = parts(vec![Op::Return(0)]);
        too_many_params.params = 3;
        assert!(Proto::new(too_many_params).is_err());
    }

    #[test]
    fn opcode_numbers_match_the_table() {
        let samples = one_of_each();
        assert_eq!(samples.len(), OPCODES.len());
        let mut codes: Vec<u8> = samples.iter().map(Op::code).collect();
        codes.sort();
        assert_eq!(codes, (0..OPCODES.len() as u8).collect::<Vec<_>>());
        assert!(std::mem::size_of::<Op>() <= 12);
    }
}
