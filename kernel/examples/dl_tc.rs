//! The tc / tc_hi Datalog workloads (bench/tc.sx, bench/tc_hi.sx) straight on the kernel's
//! `Database`, without an engine: for profiling the evaluator.
//! `cargo run --release -p sx-kernel --example dl_tc [hi]`

use sx_kernel::datalog::Database;
use sx_kernel::Value;

fn main() {
    let hi = std::env::args().nth(1).as_deref() == Some("hi");
    let start = std::time::Instant::now();
    let mut db = Database::new();
    let lcg = |x: i64| (x * 1_103_515_245 + 12_345) % 2_147_483_648;
    let node = |x: i64| if hi { (x >> 16) % 2000 } else { x % 2000 };
    let mut x = 42;
    for _ in 0..6000 {
        x = lcg(x);
        let a = node(x);
        x = lcg(x);
        let b = node(x);
        let fact = Value::list(vec![Value::sym("edge"), Value::Int(a), Value::Int(b)]);
        db.assert_fact(&fact).expect("fact");
    }
    let read = |s: &str| sx_kernel::reader::read_one(s).expect("datum");
    db.add_rule(&read("(path ?a ?b)"), &[read("(edge ?a ?b)")])
        .expect("rule");
    db.add_rule(
        &read("(path ?a ?c)"),
        &[read("(path ?a ?b)"), read("(edge ?b ?c)")],
    )
    .expect("rule");
    let n = db.count(&read("(path ?a ?b)")).expect("count");
    println!("{n} in {:?}", start.elapsed());
}
