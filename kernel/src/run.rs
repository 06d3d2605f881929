//! Running SX on an engine: text through reader → expander → engine, programs form by form
//! ([`Run`]), one call ([`Machine`]), and the host's loop. Hosts drive a [`Run`] or a
//! [`Machine`] step by step: each step ends done, failed, or stopped at a `perform` whose
//! request the host serves (synchronously or after async IO) before resuming. That loop is
//! written once, [`drive`]; synchronous hosts call it through [`drive_now`].
//!
//! This module sits above both engines (`interp.rs`, `vm.rs`), which know only the image
//! and the [`Step`] protocol of `engine.rs`.

use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[cfg(feature = "source")]
use crate::builtins;
#[cfg(feature = "source")]
use crate::engine::read_error_value;
use crate::engine::{unknown_effect, Backend, Engine, Step, Test};
use crate::error::ErrorValue;
#[cfg(feature = "source")]
use crate::expander::Expander;
use crate::expander::{ExprRef, Globals, MacroHost};
use crate::reader::SourceMap;
#[cfg(feature = "source")]
use crate::reader::{self, Mode};
use crate::value::Value;

/// A suspended or running machine of either engine.
pub enum Machine {
    #[cfg(feature = "source")]
    Interp(crate::interp::Machine),
    Vm(crate::vm::Machine),
}

impl Machine {
    pub fn run(&mut self, engine: &mut Engine) -> Step {
        match self {
            #[cfg(feature = "source")]
            Machine::Interp(m) => m.run(engine),
            Machine::Vm(m) => m.run(engine),
        }
    }

    pub fn resume(&mut self, answer: Result<Value, Value>) {
        match self {
            #[cfg(feature = "source")]
            Machine::Interp(m) => m.resume(answer),
            Machine::Vm(m) => m.resume(answer),
        }
    }

    pub fn fuel(&self) -> Option<u64> {
        match self {
            #[cfg(feature = "source")]
            Machine::Interp(m) => m.fuel(),
            Machine::Vm(m) => m.fuel(),
        }
    }
}

/// What a host drives to its end: a [`Machine`] (one call) or a [`Run`] (a program).
pub trait Drivable {
    /// Runs on `engine` until done, failed, or stopped at a `perform`.
    fn step(&mut self, engine: &mut Engine) -> Step;
    /// Continues after a `perform` with the host's answer: a value, or an error raised there.
    fn resume(&mut self, answer: Result<Value, Value>);
}

impl Drivable for Machine {
    fn step(&mut self, engine: &mut Engine) -> Step {
        self.run(engine)
    }

    fn resume(&mut self, answer: Result<Value, Value>) {
        Machine::resume(self, answer);
    }
}

impl Drivable for Run {
    fn step(&mut self, engine: &mut Engine) -> Step {
        Run::step(self, engine)
    }

    fn resume(&mut self, answer: Result<Value, Value>) {
        Run::resume(self, answer);
    }
}

/// The step → perform → resume loop, the only one: every host (the kernel itself, the CLI,
/// the server, the browser) runs SX through it. `with_engine` lends the engine for one step
/// (`|step| step(engine)`); the server borrows it from its cell only for that stretch, so
/// other requests use the engine while this one awaits. `answer` serves each `perform`
/// request; its answer (a value, or an error raised at the `perform`) resumes the task. Ends
/// with the task's value or the error it raised.
pub async fn drive<T: Drivable + ?Sized>(
    task: &mut T,
    mut with_engine: impl FnMut(&mut dyn FnMut(&mut Engine) -> Step) -> Step,
    mut answer: impl AsyncFnMut(&Value) -> Result<Value, Value>,
) -> Result<Value, Value> {
    loop {
        match with_engine(&mut |engine| task.step(engine)) {
            Step::Done(v) => return Ok(v),
            Step::Error(e) => return Err(e),
            Step::Perform(request) => task.resume(answer(&request).await),
        }
    }
}

/// [`drive`] for a host whose effects answer at once: one poll runs the task to its end.
pub fn drive_now<T: Drivable + ?Sized>(
    task: &mut T,
    engine: &mut Engine,
    mut answer: impl FnMut(&Value) -> Result<Value, Value>,
) -> Result<Value, Value> {
    let driving = drive(
        task,
        |step| step(engine),
        async |request: &Value| answer(request),
    );
    let mut driving = std::pin::pin!(driving);
    match driving
        .as_mut()
        .poll(&mut std::task::Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        // Unreachable: nothing above awaits anything that is not ready at once.
        Poll::Pending => Err(ErrorValue::value(
            "host-error",
            "a synchronous effect did not answer at once",
            vec![],
        )),
    }
}

#[cfg(feature = "source")]
impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// A fresh kernel image on the interpreter.
    #[cfg(feature = "source")]
    pub fn new() -> Engine {
        Engine::with_backend(Backend::Interp)
    }

    /// A fresh kernel image: the core library and the SX prelude, output discarded. The VM
    /// loads the prelude as bytecode (`prelude::IMAGE`, checked in beside `prelude.sx`); if
    /// that image is refused (made from another `prelude.sx` or another kernel) the prelude
    /// is compiled from source instead, or — without the `source` feature — this panics
    /// naming the reason (hosts that must not panic use [`Engine::from_prelude_image`]). The
    /// interpreter always runs the prelude from source: its closures are the interpreter's.
    pub fn with_backend(backend: Backend) -> Engine {
        match backend {
            #[cfg(feature = "source")]
            Backend::Interp => Engine::from_prelude_source(Backend::Interp),
            Backend::Vm => Engine::vm_with_prelude(crate::prelude::IMAGE),
        }
    }

    /// A VM image with `image` as its prelude, or — when it is refused — the prelude compiled
    /// from source (without the `source` feature: a panic naming why it was refused).
    pub fn vm_with_prelude(image: &[u8]) -> Engine {
        match Engine::from_prelude_image(image) {
            Ok(engine) => engine,
            #[cfg(feature = "source")]
            Err(_) => Engine::from_prelude_source(Backend::Vm),
            #[cfg(not(feature = "source"))]
            Err(why) => panic!("{why}"),
        }
    }

    /// A VM image whose prelude is loaded from `image` (`prelude::compile_image`): no
    /// expander, no compiler. An image made from another `prelude.sx`, format, instruction
    /// set or kernel is refused with a message saying how to regenerate it.
    pub fn from_prelude_image(image: &[u8]) -> Result<Engine, String> {
        let mut engine = Engine::bare(Backend::Vm);
        let program = crate::prelude::load(image, &mut engine.globals)?;
        let mut run = engine.start_compiled(program);
        drive_now(&mut run, &mut engine, |request| {
            Err(unknown_effect(request))
        })
        .map_err(|err| {
            format!(
                "the prelude image failed to run: {}",
                crate::error::describe(&err)
            )
        })?;
        Ok(engine)
    }

    /// A fresh image whose prelude is expanded (in library mode) and run from source.
    #[cfg(feature = "source")]
    pub fn from_prelude_source(backend: Backend) -> Engine {
        let mut engine = Engine::bare(backend);
        let prelude = engine
            .start(builtins::PRELUDE, Some("prelude.sx"))
            .and_then(|mut run| {
                // The prelude is the library: it names the library's own bindings.
                run.library = true;
                drive_now(&mut run, &mut engine, |request| {
                    Err(unknown_effect(request))
                })
            });
        if let Err(err) = prelude {
            panic!(
                "the SX prelude failed to load: {}",
                crate::error::describe(&err)
            );
        }
        engine
    }

    /// Reads a whole program (a read error runs nothing) and prepares to run it.
    #[cfg(feature = "source")]
    pub fn start(&self, source: &str, file: Option<&str>) -> Result<Run, Value> {
        let file: Option<Rc<str>> = file.map(Rc::from);
        let (forms, sources) = reader::read_all(source, Mode::Code, reader::DEFAULT_MAX_DEPTH)
            .map_err(|e| read_error_value(&e, file.as_ref()))?;
        Ok(Run {
            forms,
            compiled: None,
            sources,
            file,
            next: 0,
            machine: None,
            last: Value::Nil,
            fuel: self.limits.fuel,
            library: false,
        })
    }

    /// Loads a bundle (`sxbc::write_bundle`) and runs its top-level forms in order. Loading
    /// does no IO: a form that performs gets `unknown-effect`. The error is a message.
    pub fn load_bundle(&mut self, bytes: &[u8]) -> Result<(), String> {
        let programs =
            crate::sxbc::read_bundle(bytes, &mut self.globals).map_err(|e| e.to_string())?;
        for program in programs {
            let mut run = self.start_compiled(program);
            drive_now(&mut run, self, |request| Err(unknown_effect(request)))
                .map_err(|e| crate::error::describe(&e))?;
        }
        Ok(())
    }

    /// Prepares to run a program loaded from `.sxbc` (always on the VM).
    pub fn start_compiled(&self, program: crate::sxbc::Program) -> Run {
        Run {
            forms: Vec::new(),
            compiled: Some(program.forms),
            sources: SourceMap::default(),
            file: program.file,
            next: 0,
            machine: None,
            last: Value::Nil,
            fuel: self.limits.fuel,
            library: false,
        }
    }

    /// Compiles a whole program to bytecode (`sx compile`). Forms are expanded in order, as
    /// a run would; `defmacro`s and function `define`s also run so that later forms can use
    /// them. Nothing else runs.
    #[cfg(feature = "source")]
    pub fn compile_program(
        &mut self,
        source: &str,
        file: Option<&str>,
    ) -> Result<crate::sxbc::Program, Value> {
        self.compile_forms(source, file, false)
    }

    /// [`Engine::compile_program`], in library mode when `library` (the prelude).
    #[cfg(feature = "source")]
    pub(crate) fn compile_forms(
        &mut self,
        source: &str,
        file: Option<&str>,
        library: bool,
    ) -> Result<crate::sxbc::Program, Value> {
        let file: Option<Rc<str>> = file.map(Rc::from);
        let (forms, mut sources) = reader::read_all(source, Mode::Code, reader::DEFAULT_MAX_DEPTH)
            .map_err(|e| read_error_value(&e, file.as_ref()))?;
        let mut compiled = Vec::with_capacity(forms.len());
        for form in &forms {
            let mut expander = Expander::new(self, &mut sources, file.clone());
            if library {
                expander = expander.for_library();
            }
            let expr = expander.expand_toplevel(form)?;
            let proto = crate::compiler::compile_toplevel(&expr, file.clone())?;
            let defines_code = match &*expr {
                crate::expander::Expr::DefMacro { .. } => true,
                crate::expander::Expr::Define { value, .. } => {
                    matches!(&**value, crate::expander::Expr::Lambda(_))
                }
                _ => false,
            };
            if defines_code {
                let mut machine = Machine::Vm(crate::vm::Machine::new(
                    proto.clone(),
                    None,
                    self.limits.max_depth,
                ));
                if let Step::Error(e) = machine.run(self) {
                    return Err(e);
                }
            }
            compiled.push(proto);
        }
        Ok(crate::sxbc::Program {
            file,
            forms: compiled,
        })
    }

    /// Expands one form read in code mode. Without the `source` feature: `eval-unavailable`.
    pub fn expand(
        &mut self,
        form: &Value,
        sources: &mut SourceMap,
        file: Option<Rc<str>>,
    ) -> Result<ExprRef, Value> {
        #[cfg(feature = "source")]
        return Expander::new(self, sources, file).expand_toplevel(form);
        #[cfg(not(feature = "source"))]
        {
            let _ = (form, sources, file);
            Err(eval_unavailable())
        }
    }

    /// `eval` on the VM: a datum expanded and compiled to a top-level function. Without the
    /// `source` feature (the browser) there is neither expander nor compiler:
    /// `eval-unavailable`.
    pub fn compile_eval(&mut self, form: &Value) -> Result<Rc<crate::bytecode::Proto>, Value> {
        #[cfg(feature = "source")]
        {
            let mut sources = SourceMap::default();
            let expr = self.expand(form, &mut sources, None)?;
            crate::compiler::compile_toplevel(&expr, None)
        }
        #[cfg(not(feature = "source"))]
        {
            let _ = form;
            Err(eval_unavailable())
        }
    }

    /// Runs `source` to the end; any `perform` is answered by `effects`.
    #[cfg(feature = "source")]
    pub fn eval_with(
        &mut self,
        source: &str,
        file: Option<&str>,
        effects: &mut dyn FnMut(&Value) -> Result<Value, Value>,
    ) -> Result<Value, Value> {
        let mut run = self.start(source, file)?;
        drive_now(&mut run, self, effects)
    }

    /// Runs `source` with no effects available (every `perform` raises `unknown-effect`).
    #[cfg(feature = "source")]
    pub fn eval_source(&mut self, source: &str, file: Option<&str>) -> Result<Value, Value> {
        self.eval_with(source, file, &mut |req| Err(unknown_effect(req)))
    }

    /// Calls an SX function to completion, answering `perform`s with `effects`.
    pub fn call_with(
        &mut self,
        f: &Value,
        args: Vec<Value>,
        effects: &mut dyn FnMut(&Value) -> Result<Value, Value>,
    ) -> Result<Value, Value> {
        let mut machine = self.apply_machine(f.clone(), args);
        drive_now(&mut machine, self, effects)
    }

    /// A machine that will run one expanded top-level form.
    #[cfg(feature = "source")]
    pub fn machine_for(
        &self,
        expr: &ExprRef,
        file: Option<Rc<str>>,
        fuel: Option<u64>,
    ) -> Result<Machine, Value> {
        Ok(match self.backend {
            Backend::Interp => Machine::Interp(crate::interp::Machine::new(
                expr.clone(),
                fuel,
                self.limits.max_depth,
            )),
            Backend::Vm => {
                let proto = crate::compiler::compile_toplevel(expr, file)?;
                Machine::Vm(crate::vm::Machine::new(proto, fuel, self.limits.max_depth))
            }
        })
    }

    /// A machine that will apply `f` to `args`.
    pub fn apply_machine(&self, f: Value, args: Vec<Value>) -> Machine {
        match self.backend {
            #[cfg(feature = "source")]
            Backend::Interp => Machine::Interp(crate::interp::Machine::apply(
                f,
                args,
                self.limits.fuel,
                self.limits.max_depth,
            )),
            Backend::Vm => Machine::Vm(crate::vm::Machine::apply(
                f,
                args,
                self.limits.fuel,
                self.limits.max_depth,
            )),
        }
    }

    /// Runs every registered test; each result is the error a failing test raised.
    pub fn run_tests(
        &mut self,
        effects: &mut dyn FnMut(&Value) -> Result<Value, Value>,
    ) -> Vec<(Test, Result<(), Value>)> {
        let tests = std::mem::take(&mut self.tests);
        tests
            .into_iter()
            .map(|test| {
                let result = self.call_with(&test.thunk, vec![], effects).map(|_| ());
                (test, result)
            })
            .collect()
    }
}

/// What `eval` raises in a kernel built without the `source` feature.
#[cfg(not(feature = "source"))]
fn eval_unavailable() -> Value {
    ErrorValue::value(
        "eval-unavailable",
        "this host evaluates no SX source (the kernel was built without its `source` feature)",
        vec![],
    )
}

impl MacroHost for Engine {
    fn globals(&mut self) -> &mut Globals {
        &mut self.globals
    }

    fn call_macro(&mut self, mac: &Value, args: Vec<Value>) -> Result<Value, Value> {
        let Value::Macro(closure) = mac else {
            return Err(crate::error::type_error("not a macro", vec![mac.clone()]));
        };
        let f = Value::Fn(closure.clone());
        self.call_with(&f, args, &mut |req| {
            Err(ErrorValue::value(
                "unknown-effect",
                "perform is not available while expanding macros",
                vec![req.clone()],
            ))
        })
    }
}

/// A program being run form by form.
pub struct Run {
    #[cfg_attr(not(feature = "source"), allow(dead_code))]
    forms: Vec<Value>,
    /// Set when running a program loaded from bytecode.
    compiled: Option<Vec<Rc<crate::bytecode::Proto>>>,
    #[cfg_attr(not(feature = "source"), allow(dead_code))]
    sources: SourceMap,
    #[cfg_attr(not(feature = "source"), allow(dead_code))]
    file: Option<Rc<str>>,
    next: usize,
    machine: Option<Machine>,
    last: Value,
    fuel: Option<u64>,
    /// The library's own code (the prelude): expanded in library mode.
    #[cfg_attr(not(feature = "source"), allow(dead_code))]
    library: bool,
}

impl Run {
    /// Runs until the program ends, fails, or performs. Each top-level form is expanded just
    /// before it runs, so a macro must be defined by an earlier form.
    pub fn step(&mut self, engine: &mut Engine) -> Step {
        loop {
            if let Some(machine) = &mut self.machine {
                match machine.run(engine) {
                    Step::Done(v) => {
                        self.fuel = machine.fuel();
                        self.last = v;
                        self.machine = None;
                    }
                    other => return other,
                }
            }
            if let Some(protos) = &self.compiled {
                let Some(proto) = protos.get(self.next) else {
                    return Step::Done(std::mem::replace(&mut self.last, Value::Nil));
                };
                self.next += 1;
                self.machine = Some(Machine::Vm(crate::vm::Machine::new(
                    proto.clone(),
                    self.fuel,
                    engine.limits.max_depth,
                )));
                continue;
            }
            match self.next_source_form(engine) {
                None => return Step::Done(std::mem::replace(&mut self.last, Value::Nil)),
                Some(Ok(machine)) => self.machine = Some(machine),
                Some(Err(e)) => return Step::Error(e),
            }
        }
    }

    /// A machine for the next source form, expanded now; `None` at the end.
    #[cfg(feature = "source")]
    fn next_source_form(&mut self, engine: &mut Engine) -> Option<Result<Machine, Value>> {
        let form = self.forms.get(self.next)?;
        self.next += 1;
        let mut expander = Expander::new(engine, &mut self.sources, self.file.clone());
        if self.library {
            expander = expander.for_library();
        }
        Some(
            expander
                .expand_toplevel(form)
                .and_then(|expr| engine.machine_for(&expr, self.file.clone(), self.fuel)),
        )
    }

    /// Without the `source` feature a run is always compiled: nothing to expand.
    #[cfg(not(feature = "source"))]
    fn next_source_form(&mut self, _engine: &mut Engine) -> Option<Result<Machine, Value>> {
        None
    }

    pub fn resume(&mut self, answer: Result<Value, Value>) {
        if let Some(machine) = &mut self.machine {
            machine.resume(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Pending once, then ready: an effect that really waits.
    struct Later(bool);

    impl Future for Later {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                Poll::Pending
            }
        }
    }

    fn int(v: Result<Value, Value>) -> i64 {
        match v {
            Ok(Value::Int(n)) => n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    #[test]
    fn drive_releases_the_engine_while_an_effect_waits() {
        for backend in [Backend::Interp, Backend::Vm] {
            let engine = RefCell::new(Engine::with_backend(backend));
            let mut run = engine
                .borrow()
                .start(
                    "(define x 1) (+ x (perform {:op \"n\"}) (perform {:op \"n\"}))",
                    None,
                )
                .unwrap();
            let mut served = 0;
            let driving = drive(
                &mut run,
                |step| step(&mut engine.borrow_mut()),
                async |_req: &Value| {
                    Later(false).await;
                    served += 1;
                    Ok(Value::Int(10 * served))
                },
            );
            let mut driving = std::pin::pin!(driving);
            let mut cx = Context::from_waker(Waker::noop());
            let mut pauses = 0;
            let result = loop {
                match driving.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => break result,
                    Poll::Pending => {
                        pauses += 1;
                        // Meanwhile the engine serves someone else.
                        assert_eq!(int(engine.borrow_mut().eval_source("(* x 7)", None)), 7);
                    }
                }
            };
            assert_eq!((int(result), pauses), (31, 2));
        }
    }

    #[test]
    fn drive_now_raises_errors_at_the_perform() {
        let mut engine = Engine::with_backend(Backend::Vm);
        let f = engine
            .eval_source(
                "(fn (n) (guard (e (true (list :caught (error-type e)))) (perform {:op \"x\"})))",
                None,
            )
            .unwrap();
        let mut machine = engine.apply_machine(f, vec![Value::Int(1)]);
        let result = drive_now(&mut machine, &mut engine, |req| Err(unknown_effect(req)));
        assert_eq!(
            crate::printer::repr(&result.unwrap()),
            "(:caught \"unknown-effect\")"
        );
    }
}
