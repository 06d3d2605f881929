//! The SX kernel: the language, with no IO. Reader → expander → engines (the reference
//! interpreter; the bytecode VM shares the expander's output), values and printer, HTML,
//! the core library. It compiles to wasm32-unknown-unknown; IO reaches SX only through
//! `perform`, which hands a request to the host.

pub mod builtins;
pub mod bytecode;
mod call;
pub mod compiler;
pub mod datalog;
pub mod engine;
pub mod error;
pub mod expander;
pub mod flow;
pub mod html;
pub mod interp;
pub mod prelude;
pub mod printer;
pub mod reader;
pub mod run;
pub mod sxbc;
#[cfg(feature = "source")]
pub mod testing;
pub mod value;
pub mod vm;

/// Whether this build evaluates SX source (the `source` feature): without it `eval` raises
/// `eval-unavailable` and engines only load bytecode.
pub const EVALUATES_SOURCE: bool = cfg!(feature = "source");

pub use engine::{Backend, Engine, Limits, Step, KERNEL_VERSION};
pub use run::{drive, drive_now, Drivable, Machine, Run};
pub use value::Value;
